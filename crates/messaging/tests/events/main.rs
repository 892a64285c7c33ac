//! Events end to end against real stores and a real RabbitMQ: outbox → relay →
//! bus → consumer with inbox, including broker outages, consumer crashes,
//! dead letters and competing relays; and the same on the embedded bus.

mod harness;
mod proxy;

mod embedded;
mod rabbit;
