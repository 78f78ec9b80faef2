"""``Progress``: a bar on a terminal, plain lines in a log, nothing when turned off."""

from __future__ import annotations

import io

from lavida.processing.progress import Progress, ProgressOptions


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(steps, total, enabled=True, stream=None, options=None, seconds_per_step=2.0):
    stream = stream if stream is not None else io.StringIO()
    clock = Clock()
    with Progress("video 1/2 a.mp4: scoring", total=total, enabled=enabled, options=options, stream=stream,
                  clock=clock) as progress:
        for done in steps:
            clock.now += seconds_per_step
            progress.update(done)
    return stream.getvalue()


def test_a_log_gets_a_line_per_ten_percent_and_one_when_done():
    lines = _run(range(1, 21), total=20).splitlines()
    assert lines[0] == "video 1/2 a.mp4: scoring 10 % (2/20 frames), 4.0 s elapsed"
    assert [line.split(" % ")[0].rsplit(" ", 1)[1] for line in lines] == [str(p) for p in range(10, 101, 10)]
    assert lines[-1] == "video 1/2 a.mp4: scoring 100 % (20/20 frames), 40.0 s elapsed"


def test_quick_work_writes_fewer_lines_but_always_the_last():
    lines = _run(range(1, 21), total=20, seconds_per_step=0.01).splitlines()
    assert lines == ["video 1/2 a.mp4: scoring 100 % (20/20 frames), 0.2 s elapsed"]


def test_slow_work_and_unknown_totals_get_a_line_every_interval():
    options = ProgressOptions(line_interval_s=30.0)
    lines = _run(range(1, 11), total=None, options=options, seconds_per_step=10.0).splitlines()
    # a line after 30 s and 60 s without a percentage to pass, and the work done when it closes
    assert lines == ["video 1/2 a.mp4: scoring 3 frames, 30.0 s elapsed",
                     "video 1/2 a.mp4: scoring 6 frames, 60.0 s elapsed",
                     "video 1/2 a.mp4: scoring 9 frames, 90.0 s elapsed",
                     "video 1/2 a.mp4: scoring 10 frames, 100.0 s elapsed"]


def test_work_ending_short_of_its_estimate_says_where_it_ended():
    lines = _run([5, 9], total=10, seconds_per_step=0.01).splitlines()  # the container announced 10, 9 decoded
    assert lines == ["video 1/2 a.mp4: scoring 90 % (9/10 frames), 0.0 s elapsed"]


def test_a_terminal_gets_a_bar_and_a_log_nothing_unless_asked():
    terminal = _run(range(1, 21), total=20, stream=Terminal())
    assert "\r" in terminal and "frame" in terminal and " % (" not in terminal  # tqdm's bar, redrawn in place
    assert _run(range(1, 21), total=20, enabled=None) == ""  # library default: quiet in a log
    assert _run(range(1, 21), total=20, enabled=False, stream=Terminal()) == ""


def test_a_note_names_the_item_in_the_lines():
    stream, clock = io.StringIO(), Clock()
    with Progress("evaluate ped2", total=2, unit="video", enabled=True, stream=stream, clock=clock) as progress:
        progress.set_note("Test001")
        clock.now += 5.0
        progress.advance()
    assert stream.getvalue() == "evaluate ped2 50 % (1/2 videos), 5.0 s elapsed (Test001)\n"
