"""`asr serve`: the model as a service.

- `app`: OpenAI's transcription API over HTTP (FastAPI), and the page at `/`.
- `wyoming`: Home Assistant's Wyoming protocol over TCP.
- `service`: what both share: the served model, limits, admission, audio -> transcript.
- `config`: the settings (`ServeConfig`).
- `batching`: the model threads that run every request's pieces in shared batches.
- `formats`, `errors`: OpenAI's response formats and error shape.
- `server`: runs the front ends, drains on SIGTERM.

Needs the `serve` extra (`pip install 'rnn-asr[serve]'`).
"""
