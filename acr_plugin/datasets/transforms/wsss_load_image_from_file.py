"""``LoadImageFromFile`` whose errors name the missing or corrupt file."""

from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class WSSSLoadImageFromFile(LoadImageFromFile):
    """Load an image from file; a missing, empty or corrupt file is a clear error.

    Same arguments, keys and output as mmcv's ``LoadImageFromFile`` (which
    reports a corrupt file with a bare ``AssertionError``, or an
    ``AttributeError`` on ``None`` when Python runs with ``-O``). Here:

    * a missing file raises ``FileNotFoundError`` naming it;
    * an empty file, or bytes that the decoding back end cannot read as an
      image (truncated download, HTML error page saved as ``.jpg``, ...),
      raise ``OSError`` naming the file, its size and the back end;
    * with ``ignore_empty=True`` all of these return None instead (mmengine
      datasets then draw another sample in training).

    Required Keys:

    - img_path

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Args:
        to_float32 (bool): Return a float32 image. Defaults to False.
        color_type (str): Flag of ``mmcv.imfrombytes``. Defaults to 'color'.
        imdecode_backend (str): Decoding back end of ``mmcv.imfrombytes``.
            Defaults to 'cv2'.
        file_client_args (dict, optional): Deprecated, use ``backend_args``.
            Defaults to None.
        ignore_empty (bool): Return None for a missing or unreadable file
            instead of raising. Defaults to False.
        backend_args (dict, optional): File back-end arguments of
            ``mmengine.fileio.get``. Defaults to None.
    """

    def _read_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']``.

        Args:
            results (dict): Result dict with ``img_path``.

        Returns:
            dict | None: ``results`` with ``img``, ``img_shape`` and
            ``ori_shape``; None for a bad file when ``ignore_empty``.

        Raises:
            KeyError: If ``img_path`` is missing.
            FileNotFoundError: If the file does not exist.
            OSError: If the file cannot be read or decoded as an image.
        """
        name = type(self).__name__
        filename = results.get('img_path')
        if filename is None:
            raise KeyError(f'{name} needs "img_path" in the results dict')
        try:
            img_bytes = self._read_bytes(filename)
        except FileNotFoundError as err:
            if self.ignore_empty:
                return None
            raise FileNotFoundError(
                f'{name}: image file {filename} does not exist'
            ) from err
        except OSError as err:
            if self.ignore_empty:
                return None
            raise OSError(f'{name}: cannot read image file {filename}: {err}') from err

        img, cause = None, None
        if img_bytes:
            try:
                img = mmcv.imfrombytes(
                    img_bytes, flag=self.color_type, backend=self.imdecode_backend
                )
            except Exception as err:  # decoders raise many types
                cause = err
        if img is None or img.size == 0:
            if self.ignore_empty:
                return None
            what = (
                'is empty (0 bytes)'
                if not img_bytes
                else f'({len(img_bytes)} bytes) is unreadable or corrupt: the '
                f'"{self.imdecode_backend}" back end could not decode it as an '
                'image'
            )
            detail = f' ({type(cause).__name__}: {cause})' if cause else ''
            raise OSError(
                f'{name}: image file {filename} {what}{detail}; replace the file '
                'or remove it from the split list'
            ) from cause

        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
