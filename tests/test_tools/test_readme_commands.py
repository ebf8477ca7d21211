"""The commands in the README and the docs match the repository (no drift).

Every shell command of the ``shell``/``bash`` code blocks of ``README.md``,
``docs/*.md``, ``configs/*/README.md`` and ``benchmarks/README.md``, and every
inline ```python ...``` / ```bash ...``` / ```make ...``` span, is checked:

* the script it runs exists (``$VAR`` set by an earlier ``VAR=$(python -c
  ...)`` line of the same block is computed by running that code), and so do
  the ``configs/``, ``tools/``, ``benchmarks/``, ``docs/`` and
  ``requirements/`` paths it names (``{a,b}`` alternatives and ``*`` globs
  expanded);
* every flag is one of the tool's own argparse options, and literal values
  (``--launcher pytorch``, ``--split train|val|test``) are accepted by it;
  a whole code-block command (no ``...``) parses with the tool's parser, with
  placeholders (``CONFIG``, ``DIR``, ``FLOAT``) filled in;
* ``bash tools/dist_*.sh`` arguments after the GPU count, and ``bash
  tools/slurm_*.sh`` arguments after ``PARTITION JOB_NAME``, are checked
  against ``tools/train.py`` / ``tools/test.py``; so are the tools that
  ``srun [options]`` runs; ``make`` targets exist.

Every relative markdown link of these files points to a file that exists,
and its ``#anchor`` (if any) to a heading of the linked markdown file.
"""

import argparse
import contextlib
import glob
import io
import itertools
import os.path as osp
import re
import shlex

import pytest
from mmengine.config import DictAction

from tests.scripts import ROOT, load_script

DOCS = (
    ['README.md']
    + sorted(glob.glob('docs/*.md', root_dir=ROOT))
    + sorted(glob.glob('configs/*/README.md', root_dir=ROOT))
    + ['benchmarks/README.md']
)
PYTHONS = {'python', 'python3', '.venv/bin/python'}
#: arguments that name repository files (they must exist)
REPO_PREFIXES = ('configs/', 'tools/', 'benchmarks/', 'docs/', 'requirements/')
#: dist scripts: (tool, number of tool positionals before the GPU count)
DIST_SCRIPTS = {'tools/dist_train.sh': ('tools/train.py', 1)}
DIST_SCRIPTS['tools/dist_test.sh'] = ('tools/test.py', 2)
#: Slurm scripts (``PARTITION JOB_NAME`` first): (tool, what the script makes
#: of its two further positionals)
SLURM_SCRIPTS = {
    'tools/slurm_train.sh': ('tools/train.py', lambda c, w: [c, '--work-dir', w]),
    'tools/slurm_test.sh': ('tools/test.py', lambda c, ckpt: [c, ckpt]),
}
PLACEHOLDER = re.compile(r'^([A-Z][A-Z0-9_]*|<[^>]*>)$')
INLINE_START = re.compile(
    r'^([A-Z_]+=\S+ )*(python3?|\.venv/bin/python|bash|make) '
    r'|^(tools|benchmarks)/[\w./-]+\.py '
)


# ----------------------------------------------------------------- extraction
def code_blocks(text):
    """``(first line number, body)`` of the shell code blocks."""
    blocks, body, lang, start = [], None, None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith('```'):
            if body is None:
                lang, body, start = line.strip()[3:].strip(), [], number + 1
            else:
                if lang in ('shell', 'bash', 'sh'):
                    blocks.append((start, '\n'.join(body)))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def block_commands(body):
    """The commands of a block: continuation lines joined, ``&&``/``;`` split."""
    commands = []
    for line in body.replace('\\\n', ' ').splitlines():
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        assignment = re.match(r'^\s*(?:export\s+)?(\w+)=\$\((.*)\)\s*$', line)
        if assignment:
            commands.append(('assign', assignment.group(1), assignment.group(2)))
            continue
        tokens = shlex.split(line, comments=True)
        for is_sep, group in itertools.groupby(tokens, lambda t: t in ('&&', ';')):
            if not is_sep:
                commands.append(('run', list(group)))
    return commands


def inline_commands(text):
    """Inline code spans that are commands (partial: never parsed whole)."""
    prose = re.sub(r'^\s*```.*?^\s*```', '', text, flags=re.S | re.M)
    out = []
    for match in re.finditer(r'(`+)(.+?)(?<!`)\1(?!`)', prose, re.S):
        span = ' '.join(match.group(2).split())
        if INLINE_START.match(span + ' '):
            out.append(shlex.split(span))
    return out


def all_commands():
    """``(doc:line, kind, payload, partial)`` for every documented command."""
    found = []
    for doc in DOCS:
        with open(osp.join(ROOT, doc), encoding='utf-8') as f:
            text = f.read()
        for start, body in code_blocks(text):
            found.append((f'{doc}:{start}', 'block', body, False))
        for tokens in inline_commands(text):
            found.append((f'{doc} `{" ".join(tokens)}`', 'inline', tokens, True))
    return found


# ----------------------------------------------------------------- tools
class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


_PARSERS = {}


def tool_parser(path):
    """The ``argparse`` parser that the script's ``parse_args()`` builds."""
    if path not in _PARSERS:
        module = load_script(path)
        original = argparse.ArgumentParser.parse_args

        def capture(self, args=None, namespace=None):
            raise _Captured(self)

        argparse.ArgumentParser.parse_args = capture
        try:
            module.parse_args()
        except _Captured as captured:
            _PARSERS[path] = captured.parser
        finally:
            argparse.ArgumentParser.parse_args = original
        assert path in _PARSERS, f'{path}: parse_args() built no parser'
    return _PARSERS[path]


class _ParseError(Exception):
    pass


def _raise(message):
    raise _ParseError(message)


def _placeholder(token):
    return bool(PLACEHOLDER.match(token)) or token == 'k=v'


def _valid(action, value):
    if action.choices is not None and value not in action.choices:
        return False
    if callable(action.type):
        try:
            action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            return False
    return True


def _fill(action, value, where):
    """A concrete value for an option value as documented."""
    if '|' in value:
        alternatives = value.split('|')
        literal = [a for a in alternatives if not _placeholder(a)]
        for alt in literal:
            assert _valid(action, alt), f'{where}: {action.dest}={alt!r} refused'
        if literal:
            return literal[0]
        value = alternatives[0]
    if _placeholder(value):
        if action.choices is not None:
            return next(iter(action.choices))
        return 'a=1' if isinstance(action, DictAction) else '1'
    assert _valid(action, value), f'{where}: {action.dest}={value!r} refused'
    return value


def check_tool_args(script, tokens, where, partial):
    """Flags known, literal values accepted, whole command parsed."""
    parser = tool_parser(script)
    tokens = [t.replace('[', '').replace(']', '') for t in tokens]
    tokens = [t for t in tokens if t]
    argv, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == '...':
            partial = True
            continue
        if not token.startswith('-') or re.match(r'^-\d', token):
            argv.append(token)
            continue
        flag, eq, inline_value = token.partition('=')
        action = parser._option_string_actions.get(flag)
        assert action is not None, f'{where}: {script} has no option {flag}'
        argv.append(flag)
        if action.nargs == 0:
            continue
        values = [inline_value] if eq else []
        many = action.nargs in ('+', '*')
        while not eq and i < len(tokens) and not tokens[i].startswith('-'):
            values.append(tokens[i])
            i += 1
            if not many:
                break
        values = [v for v in values if v != '...']
        if not values and action.nargs != '?':
            values = ['CONFIG_VALUE']  # documented as "--flag ..."
        argv.extend(_fill(action, v, where) for v in values)
    if not partial:
        parser.error = _raise
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                argparse.ArgumentParser.parse_args(parser, argv)
        except _ParseError as err:
            pytest.fail(f'{where}: {script} {" ".join(argv)}: {err}')
        finally:
            del parser.error


def check_repo_paths(tokens, where):
    for token in tokens:
        token = token.replace('[', '').replace(']', '')
        if not token.startswith(REPO_PREFIXES):
            continue
        for path in _brace_expand(token):
            assert glob.glob(path, root_dir=ROOT), f'{where}: {path} does not exist'


def _brace_expand(token):
    match = re.search(r'\{([^{}]*)\}', token)
    if not match:
        return [token]
    head, tail = token[: match.start()], token[match.end() :]
    return [
        path
        for alt in match.group(1).split(',')
        for path in _brace_expand(head + alt + tail)
    ]


def make_targets():
    with open(osp.join(ROOT, 'Makefile'), encoding='utf-8') as f:
        return set(re.findall(r'^([\w-]+):', f.read(), re.M))


def check_command(tokens, where, partial, env):
    tokens = [
        re.sub(r'\$(\w+)', lambda m: env.get(m.group(1), m.group(0)), t) for t in tokens
    ]
    while tokens and re.match(r'^\w+=', tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if not tokens or tokens[0].startswith('-'):
        return None
    check_repo_paths(tokens, where)
    head, args = tokens[0], tokens[1:]
    if head == 'make':  # targets; VAR=value arguments override make variables
        missing = {a for a in args if not re.match(r'^\w+=', a)} - make_targets()
        assert not missing, f'{where}: no make target {missing}'
        return 'make'
    if head in ('bash', 'sh'):
        script, args = args[0], args[1:]
        assert osp.isfile(osp.join(ROOT, script)), f'{where}: {script} missing'
        if script in DIST_SCRIPTS:
            tool, num_positional = DIST_SCRIPTS[script]
            forwarded = args[:num_positional] + args[num_positional + 1 :]
            forwarded += ['--launcher', 'pytorch']  # what the script appends
            check_tool_args(tool, forwarded, where, partial)
        if script in SLURM_SCRIPTS:
            tool, positionals = SLURM_SCRIPTS[script]
            assert len(args) >= 4, f'{where}: {script} needs 4 positionals'
            forwarded = positionals(*args[2:4]) + args[4:]
            forwarded += ['--launcher', 'slurm']  # what the script appends
            check_tool_args(tool, forwarded, where, partial)
        return script
    if head == 'srun':  # srun [options] python TOOL ...
        args = list(itertools.dropwhile(lambda t: t not in PYTHONS, args))
        if not args:
            return None
        head, args = args[0], args[1:]
    if head in PYTHONS:
        if args[:2] == ['-m', 'torch.distributed.run']:
            args = list(itertools.dropwhile(lambda t: not t.endswith('.py'), args))
        if args[:1] == ['-u']:  # unbuffered output
            args = args[1:]
        if not args or args[0] in ('...', '-m', '-c'):
            return None
        head, args = args[0], args[1:]
    if not head.endswith('.py'):
        return None
    assert osp.isfile(osp.join(ROOT, head)), f'{where}: {head} missing'
    check_tool_args(head, args, where, partial)
    return head


def _run_assignment(code_line):
    tokens = shlex.split(code_line)
    assert tokens[0] in PYTHONS and tokens[1] == '-c', code_line
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(tokens[2], {})
    return out.getvalue().strip()


COMMANDS = all_commands()


@pytest.mark.parametrize(
    'where,kind,payload,partial', COMMANDS, ids=[c[0] for c in COMMANDS]
)
def test_documented_command(where, kind, payload, partial):
    if kind == 'inline':
        check_command(payload, where, partial, {})
        return
    env = {}
    for command in block_commands(payload):
        if command[0] == 'assign':
            env[command[1]] = _run_assignment(command[2])
            continue
        check_command(command[1], where, partial, env)


def test_every_tool_of_the_readme_is_checked():
    """The extraction finds the commands (an empty list passes nothing)."""
    scripts = set()
    for where, kind, payload, partial in COMMANDS:
        if kind == 'inline':
            scripts.add(check_command(payload, where, True, {}))
            continue
        env = {}
        for command in block_commands(payload):
            if command[0] == 'assign':
                env[command[1]] = _run_assignment(command[2])
            else:
                scripts.add(check_command(command[1], where, partial, env))
    for script in (
        'tools/train.py',
        'tools/test.py',
        'tools/dist_train.sh',
        'tools/dist_test.sh',
        'tools/slurm_train.sh',
        'tools/slurm_test.sh',
        'tools/generate_pseudo_labels.py',
        'tools/run_synthetic_chain.py',
        'tools/dataset_converters/coco2014_to_semantic.py',
        'benchmarks/synthetic_ablation.py',
        'make',
    ):
        assert script in scripts, script


def test_the_checker_catches_drift():
    """A wrong flag, a wrong choice, a missing config: each fails."""
    config = 'configs/vit_cam/vit-cam_tiny-p8_1xb64-600it_synthetic-64x64.py'
    good = f'python tools/train.py {config} --amp'
    check_command(shlex.split(good), 'good', False, {})
    for bad in (
        good + ' --no-such-flag',
        good + ' --launcher slurmish',
        'python tools/train.py configs/vit_cam/no_such_config.py',
        'python tools/train.py',  # the config is required
        'python tools/generate_pseudo_labels.py C K --out-dir D --split trainaug',
        'bash tools/dist_train.sh CONFIG 2 --out DIR',  # a test.py flag
        'bash tools/slurm_train.sh P J CONFIG DIR --out DIR',  # a test.py flag
        'bash tools/slurm_test.sh P J CONFIG',  # no checkpoint
        'srun -p P --ntasks=2 python tools/test.py CONFIG CKPT --launcher slurmish',
        'make no-such-target',
    ):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_command(shlex.split(bad), bad, False, {})


def test_readme_activates_the_venv_before_its_python_commands():
    """``make install`` puts the stack in ``.venv``: a bare ``python tools/...``
    works only in the activated venv, so the README activates it (in a code
    block) before its first bare ``python`` command and says what else works."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    first_python = activation = None
    for start, body in code_blocks(text):
        if activation is None and 'source .venv/bin/activate' in body:
            activation = start
        for command in block_commands(body):
            if command[0] == 'run' and command[1][0] in ('python', 'python3'):
                first_python = first_python or start
    assert first_python is not None
    assert activation is not None and activation <= first_python
    prose = ' '.join(text.split())
    assert 'write `.venv/bin/python` for `python`' in prose
    assert "`PYTHON` unset: the repository's `.venv/bin/python`" in prose


# ----------------------------------------------------------------- links
def _prose_lines(text):
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith('```'):
            fenced = not fenced
        elif not fenced:
            yield line


def heading_anchors(text):
    """GitHub's anchors of the markdown headings (``-1``... for repeats)."""
    anchors, seen = set(), {}
    for line in _prose_lines(text):
        match = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).strip().lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f'{slug}-{count}')
    return anchors


def relative_links(text):
    """``(target, anchor)`` of the relative links and images outside code."""
    prose = '\n'.join(_prose_lines(text))
    prose = re.sub(r'(`+).+?\1', '', prose, flags=re.S)  # inline code
    for target in re.findall(r'\]\(([^()\s]+)\)', prose):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, mailto:, ...
            continue
        path, _, anchor = target.partition('#')
        yield path, anchor


@pytest.mark.parametrize('doc', DOCS)
def test_relative_links_resolve(doc):
    with open(osp.join(ROOT, doc), encoding='utf-8') as f:
        text = f.read()
    for path, anchor in relative_links(text):
        target = osp.normpath(osp.join(osp.dirname(doc), path)) if path else doc
        full = osp.join(ROOT, target)
        assert osp.exists(full), f'{doc}: link to missing {target}'
        if anchor and target.endswith('.md'):
            with open(full, encoding='utf-8') as f:
                anchors = heading_anchors(f.read())
            assert anchor in anchors, f'{doc}: no heading #{anchor} in {target}'


def test_link_checker_catches_broken_links():
    text = (
        '# A `b`: c -> d\n[ok](#a-b-c---d) [bad](#nope) [web](https://x.org/y)\n'
        '```\n[in code](missing.md)\n```\n'
    )
    assert heading_anchors(text) == {'a-b-c---d'}
    assert list(relative_links(text)) == [('', 'a-b-c---d'), ('', 'nope')]


def test_readme_links_every_docs_page():
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        linked = {osp.normpath(path) for path, _ in relative_links(f.read())}
    pages = set(glob.glob('docs/*.md', root_dir=ROOT))
    assert pages - linked == set()
