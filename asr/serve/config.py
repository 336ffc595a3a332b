"""`asr serve`'s settings: the model, what is reported about it, and the limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeConfig:
    model: str  # checkpoint (.pt) or exported model (.onnx)
    lm: str | None = None  # LM folder or file: beam search (greedy without)
    device: str = "auto"  # "auto", "cpu", "cuda", ...
    model_name: str | None = None  # the id in GET /v1/models (default: folder/file of `model`)
    language: str = "en"  # the model's language, as reported to clients
    api_key: str | None = None  # Bearer key every /v1 request must carry (None: no key)
    max_upload_mb: float = 200.0  # larger uploads get 413
    max_audio_seconds: float = 4 * 3600.0  # longer audio gets 413
    max_queue: int = 64  # requests in flight at once (read, queued or decoding); more get 503
    max_batch_size: int = 16  # pieces per model batch
    max_batch_seconds: float = 320.0  # padded audio seconds per model batch
    max_wait_ms: float = 10.0  # how long a batch with room waits for more pieces
    # threads running the model, each on cores / lanes of torch's threads; with 2 or more, one
    # lane only takes short files, so they never wait behind a long file's batches
    lanes: int = 2
    prepare_threads: int = 2  # threads that read uploads (a long file's pauses: a child process)
    shutdown_seconds: float = 30.0  # on SIGTERM, how long requests in flight may still take
    max_streams: int = 16  # live WebSocket streams open at once; more are closed with 1013
    stream_idle_seconds: float = 30.0  # a stream with no message for this long is closed
    stream_endpoint_seconds: float = 0.5  # silence that ends a live segment (its final result)

    @property
    def served_name(self) -> str:
        """`model_name`, or the model file with its folder ("synth-demo/best.pt")."""
        if self.model_name:
            return self.model_name
        path = Path(self.model)
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
