"""The batched log handler: lines reach their stream together, and none is lost or held for ever."""

from __future__ import annotations

import io
import logging

from gateway.logs import BatchedStreamHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler]
    return logger


def test_lines_are_written_together_on_flush_in_order() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=3600)
    log = logger_with(handler, "test.logs.batched")
    for number in range(5):
        log.info("line %d", number)
    assert stream.getvalue() == "" and stream.writes == 0
    handler.flush()
    assert stream.getvalue().splitlines() == [f"line {number}" for number in range(5)]
    assert stream.writes == 1
    handler.flush()  # nothing new: nothing written
    assert stream.writes == 1


def test_a_warning_is_written_at_once_with_the_lines_before_it() -> None:
    stream = CountingStream()
    log = logger_with(BatchedStreamHandler(stream, interval=3600), "test.logs.warning")
    log.info("before")
    log.warning("trouble")
    assert stream.getvalue().splitlines() == ["before", "trouble"]


def test_lines_older_than_the_interval_are_written_with_the_next_one() -> None:
    stream = CountingStream()
    log = logger_with(BatchedStreamHandler(stream, interval=0.0), "test.logs.interval")
    log.info("first")
    assert stream.getvalue() == "first\n"


def test_closing_writes_what_is_held() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=3600)
    logger_with(handler, "test.logs.close").info("last words")
    handler.close()
    assert stream.getvalue() == "last words\n"
