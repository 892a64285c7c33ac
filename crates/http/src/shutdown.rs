//! Shutdown passed around as a value: every server and background task holds a
//! [`Shutdown`] and stops when it resolves.

use tokio::sync::watch;

/// Fires the shutdown of everything holding the paired [`Shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once shutdown has been asked for; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A shutdown fired by SIGINT or SIGTERM (and by the returned trigger).
    pub fn on_signals() -> (ShutdownTrigger, Shutdown) {
        let (trigger, shutdown) = Self::new();
        let fire = trigger.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Shutdown signal received; draining.");
            fire.fire();
        });
        (trigger, shutdown)
    }

    pub async fn wait(mut self) {
        // An error means every trigger is gone: nobody can ask any more, so stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.0.borrow()
    }
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
