"""Speech recognition with recurrent networks: log-mel -> (conv +) BiGRU/LSTM -> CTC."""

__version__ = "0.1.0"
