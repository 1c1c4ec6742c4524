"""visrec.prefetch: results in input order, computed ahead on threads."""
import threading
import time

from visrec.prefetch import prefetch


def test_results_keep_the_input_order_even_when_later_items_finish_first():
    def slow_first(i):
        time.sleep(0.05 if i == 0 else 0)
        return i * 10

    assert list(prefetch(range(6), slow_first, workers=3, window=4)) == [0, 10, 20, 30, 40, 50]


def test_work_runs_on_other_threads_and_ahead_of_the_consumer():
    seen = []

    def record(i):
        seen.append((i, threading.current_thread().name))
        return i

    results = prefetch(range(5), record, workers=2, window=3)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(seen) >= 3  # items 1 and 2 were started before the consumer asked for them
    assert list(results) == [1, 2, 3, 4]
    assert all(name.startswith("visrec-decode") for _, name in seen)


def test_no_workers_maps_in_the_calling_thread():
    names = []
    assert list(prefetch([1, 2], lambda i: names.append(threading.current_thread().name) or i, 0, 4)) == [1, 2]
    assert set(names) == {threading.current_thread().name}
