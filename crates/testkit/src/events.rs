//! Listening on a test service's bus: a [`Recorder`] subscribed to the event
//! types a test awaits ([`listen`]), and waiting until it has recorded enough.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_messaging::{Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription};
use tokio::sync::watch;

/// Records every event it is handed, in the order they arrive.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Envelope>>);

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Recorder {
    /// Every event recorded so far, in the order they arrived.
    pub fn events(&self) -> Vec<Envelope> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `enough` holds for the events recorded so far, and returns
    /// them; fails naming `what` and the events seen once `within` has passed.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        enough: impl Fn(&[Envelope]) -> bool,
    ) -> Vec<Envelope> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.events();
            if enough(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "{what}: saw only {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The types of `events`, in order.
pub fn types<'a>(events: impl IntoIterator<Item = &'a Envelope>) -> Vec<&'a str> {
    events.into_iter().map(|e| e.event_type.as_str()).collect()
}

/// Subscribes a [`Recorder`] to `event_types` on `bus`, as the consumer
/// `listener`. It listens until the returned sender is dropped.
pub async fn listen(bus: &dyn Bus, event_types: &[&str]) -> (Arc<Recorder>, watch::Sender<bool>) {
    let recorder = Arc::new(Recorder::default());
    let (stop, mut stopped) = watch::channel(false);
    bus.subscribe(
        Subscription {
            consumer: "listener".into(),
            event_types: event_types.iter().copied().map(str::to_owned).collect(),
            handler: recorder.clone(),
            retry: RetryPolicy::default(),
            prefetch: 16,
        },
        Box::pin(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }),
    )
    .await
    .unwrap();
    (recorder, stop)
}
