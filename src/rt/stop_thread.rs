//! A named OS thread that runs until told to stop (the worker's heart, beat): [`StopThread::stop`]
//! or a drop signals it and waits for it to end, so what it does on its way out (a last event, a
//! saved state) is done when the call returns.

use std::thread::JoinHandle;

/// The thread and its stop signal.
pub(crate) struct StopThread {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StopThread {
    /// Starts `body` on a thread named `name`; `body` returns once its receiver says stop
    /// (`recv_timeout` on it gives both the wait and the signal).
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(flume::Receiver<()>) + Send + 'static,
    ) -> std::io::Result<StopThread> {
        let (tx, rx) = flume::bounded(1);
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || body(rx))?;
        Ok(StopThread { stop: Some(tx), thread: Some(thread) })
    }

    /// Signals the thread and waits for it; a second call does nothing.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StopThread {
    fn drop(&mut self) {
        self.stop();
    }
}
