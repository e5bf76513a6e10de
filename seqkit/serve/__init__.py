"""``seqkit serve``: an HTTP service over an exported model, on the torch-free runtime.

Needs the ``serve`` extra (``pip install 'seqkit[serve]'``: FastAPI, uvicorn). The app lives in
:mod:`seqkit.serve.app` (``create_app``), the limits and bodies in :mod:`seqkit.serve.schemas`,
the request queue in :mod:`seqkit.serve.batcher`. See docs/serving.md. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqkit.errors import SeqkitError
from seqkit.runtime import load_model
from seqkit.runtime.format import MANIFEST_FILE

__all__ = ["serve"]


def serve(model_dir: Path, *, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
          limits: Any = None, log_level: str = "info", allowed_hosts: list[str] | None = None) -> None:
    """Load MODEL_DIR (an exported model: manifest checked) and serve it until interrupted.

    ``limits``: a :class:`seqkit.serve.schemas.ServeLimits` (None: the defaults).
    ``allowed_hosts``: Host header names answered (None: any).
    """
    try:
        import uvicorn

        from seqkit.serve.app import create_app  # the serve extra (FastAPI), optional
    except ImportError as exc:
        raise SeqkitError(f"`seqkit serve` needs the serve extra ({exc.name} is missing): "
                          "pip install 'seqkit[serve]'") from None
    model_dir = Path(model_dir)
    if model_dir.is_dir() and not (model_dir / MANIFEST_FILE).is_file():
        raise SeqkitError(f"{model_dir}: not an exported model (no {MANIFEST_FILE}); the server runs without "
                          f"torch, so export the run first: seqkit export {model_dir} -o MODEL_DIR")
    model = load_model(model_dir, threads=threads)
    app = create_app(model, limits, allowed_hosts)
    # An idle keep-alive socket is closed after 5 s; a request line or header block over 16 KB
    # (h11's bound) is refused, so a slow or idle client cannot hold a connection for long.
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5, timeout_keep_alive=5,
                h11_max_incomplete_event_size=16 * 1024)
