"""Stand-ins for Slurm's ``srun`` and ``scontrol``, to run the Slurm launch
scripts (``tools/slurm_*.sh``) on one machine without Slurm.

:func:`install_slurm_stubs` writes both into a folder to put first on
``PATH``. The ``srun`` stub appends its argv (one JSON list a line) to
``$SRUN_STUB_LOG`` when set, reads the options the scripts pass (``-p``,
``--job-name``, ``--ntasks``, ``--ntasks-per-node``, ``--cpus-per-task``,
``--kill-on-bad-exit``, ...), and runs the command ``--ntasks`` times in
parallel, each task with the environment a real ``srun`` gives it
(``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``, ``SLURM_NODELIST``,
``SLURM_JOB_ID``, ...; the node list is ``$SRUN_STUB_NODELIST``, default
``localhost``). It exits with the first non-zero task status (after
terminating the other tasks when ``--kill-on-bad-exit=1``), else 0. The
``scontrol`` stub answers ``scontrol show hostnames LIST`` with
``$SCONTROL_STUB_HOSTS`` (default ``localhost``), one a line, and appends
its argv to ``$SCONTROL_STUB_LOG`` when set.
"""

import json
import os
import stat
import sys
from typing import List

SRUN = r"""
import json
import os
import subprocess
import sys
import time

#: options that take a value as the next argument (``-p debug``)
WITH_VALUE = {'-p', '--partition', '-J', '--job-name', '-n', '--ntasks',
              '-N', '--nodes', '-c', '--cpus-per-task', '-t', '--time',
              '--gres', '--ntasks-per-node'}
argv = sys.argv[1:]
if os.environ.get('SRUN_STUB_LOG'):
    with open(os.environ['SRUN_STUB_LOG'], 'a') as f:
        f.write(json.dumps(argv) + '\n')
opts, i = {}, 0
while i < len(argv) and argv[i].startswith('-'):
    key, eq, value = argv[i].partition('=')
    if eq:
        opts[key] = value
    elif key in WITH_VALUE and i + 1 < len(argv):
        i += 1
        opts[key] = argv[i]
    else:
        opts[key] = '1'  # a flag (--exclusive)
    i += 1
command = argv[i:]
if not command:
    sys.exit('srun stub: no command')
alias = {'-p': '--partition', '-J': '--job-name', '-n': '--ntasks',
         '-N': '--nodes', '-c': '--cpus-per-task', '-K': '--kill-on-bad-exit'}
opts = {alias.get(k, k): v for k, v in opts.items()}
ntasks = int(opts.get('--ntasks', 1))
per_node = int(opts.get('--ntasks-per-node', ntasks))
nodes = -(-ntasks // per_node)
nodelist = os.environ.get('SRUN_STUB_NODELIST', 'localhost')
tasks = []
for rank in range(ntasks):
    env = dict(os.environ)
    env.update(
        SLURM_JOB_ID='4242',
        SLURM_JOBID='4242',
        SLURM_STEP_ID='0',
        SLURM_JOB_NAME=opts.get('--job-name', 'stub'),
        SLURM_JOB_PARTITION=opts.get('--partition', 'stub'),
        SLURM_NTASKS=str(ntasks),
        SLURM_NPROCS=str(ntasks),
        SLURM_NNODES=str(nodes),
        SLURM_NTASKS_PER_NODE=str(per_node),
        SLURM_CPUS_PER_TASK=opts.get('--cpus-per-task', '1'),
        SLURM_NODELIST=nodelist,
        SLURM_JOB_NODELIST=nodelist,
        SLURM_STEP_NODELIST=nodelist,
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank % per_node),
        SLURM_NODEID=str(rank // per_node),
    )
    tasks.append(subprocess.Popen(command, env=env))
kill = opts.get('--kill-on-bad-exit', '0') != '0'
status = 0
while any(task.poll() is None for task in tasks):
    bad = [t.returncode for t in tasks if t.returncode not in (None, 0)]
    if bad and kill:
        for task in tasks:
            if task.poll() is None:
                task.terminate()
    time.sleep(0.05)
for task in tasks:
    if task.returncode != 0:
        status = status or (task.returncode if task.returncode > 0 else 1)
sys.exit(status)
"""

SCONTROL = r"""
import json
import os
import sys

if os.environ.get('SCONTROL_STUB_LOG'):
    with open(os.environ['SCONTROL_STUB_LOG'], 'a') as f:
        f.write(json.dumps(sys.argv[1:]) + '\n')
if sys.argv[1:3] not in (['show', 'hostnames'], ['show', 'hostname']):
    sys.exit('scontrol stub: only "show hostnames LIST"')
print('\n'.join(os.environ.get('SCONTROL_STUB_HOSTS', 'localhost').split()))
"""


def install_slurm_stubs(bin_dir) -> str:
    """Write ``srun`` and ``scontrol`` stubs into ``bin_dir``.

    Returns:
        str: ``bin_dir``, to put first on ``PATH``.
    """
    os.makedirs(bin_dir, exist_ok=True)
    for name, body in (('srun', SRUN), ('scontrol', SCONTROL)):
        path = os.path.join(bin_dir, name)
        with open(path, 'w') as f:
            f.write(f'#!{sys.executable}\n{body}')
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return str(bin_dir)


def read_calls(log) -> List[List[str]]:
    """The argv lists a stub appended to its log, oldest first."""
    with open(log) as f:
        return [json.loads(line) for line in f if line.strip()]
