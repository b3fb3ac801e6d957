"""One process at a time on a model's run folder or a decoded-image cache.

Two trainings started at once on the same `--model` (or two runs rebuilding
the same cache) would interleave their checkpoints and files. The first one
takes an exclusive `flock` on a small lock file; the second is told which
process holds it and stops with exit code 2. The kernel releases the lock
when the holder exits, even after SIGKILL, so a crashed run never leaves a
stale lock; the file itself is removed on a clean release.
"""

import contextlib
import fcntl
import os


class LockedError(ValueError):
    """Another process holds the lock (the message names it and what to do)."""


@contextlib.contextmanager
def exclusive(lock_path, what):
    """Hold an exclusive lock on `lock_path` for the `with` block, or raise LockedError.

    `what` names the protected thing in the message ("the run folder m.model.run").
    """
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockedError(f"{what} is in use by another pokedex process (pid {holder}); "
                              "wait for it to finish or stop it, then run again") from None
        except BaseException:
            handle.close()
            raise
        # The previous holder may have removed the file between our open and
        # flock: then we locked an orphan inode; try again on the new file.
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)  # removed while still locked: nobody can take the old inode
        handle.close()
