"""Live streaming recognition: audio in as it arrives, partial and final results out.

`StreamingRecognizer` (asr.stream.recognizer) gives greedy partials while a segment is spoken
and a final result with word times and confidences at each endpoint (asr.stream.endpoint); a
bidirectional model streams by re-decoding the open segment, a unidirectional one
incrementally through asr.stream.encoder.
"""

from asr.stream.recognizer import StreamingRecognizer, StreamResult, StreamWord

__all__ = ["StreamResult", "StreamWord", "StreamingRecognizer"]
