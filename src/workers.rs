//! Per-core workers: with more than one worker, each is a thread with its own single-threaded
//! tokio runtime, and every listener accepts on each of them through a socket of its own bound
//! to the same address (`SO_REUSEPORT`: the kernel spreads new connections over the sockets).
//! A connection then lives on one thread from accept to close, with its upstream connections
//! (the pools keep one idle list per worker), as nginx's workers do: no work-stealing, no task
//! moving between threads, no wake-up crossing cores.
//!
//! The control plane (config applies, the admin API, health checks, rollouts) runs on the
//! runtime of the thread that called [`start`]. Without workers (one worker, or tests running
//! weir in-process) listeners accept on the runtime they are started on.

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::runtime::Handle;

/// The workers' runtimes, once started.
static HANDLES: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// The worker this thread is (0 on any other thread).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `n` worker threads (`weir-worker-0` ...), each running its own runtime until the
/// process exits. Once per process; fewer than two starts none.
pub(crate) fn start(n: usize) -> std::io::Result<()> {
    if n < 2 || HANDLES.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("weir-worker-{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("a worker thread ended at start"))??;
        handles.push(handle);
    }
    let _ = HANDLES.set(handles);
    Ok(())
}

/// The workers' runtimes; empty without workers.
pub(crate) fn handles() -> &'static [Handle] {
    HANDLES.get().map(Vec::as_slice).unwrap_or(&[])
}

/// How many workers there are (1 without workers): how many idle lists a pool keeps.
pub(crate) fn count() -> usize {
    handles().len().max(1)
}

/// The worker the calling thread is, below [`count`] (0 off the workers).
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}
