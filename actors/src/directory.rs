//! The service directory: where innovaphone Devices' sysclient endpoint is, as learnt from
//! each PBX connection's ServicesInfo, or fixed by `devices.sysclient_url`.
//!
//! Messages it takes: [`DevicesUrlLearned`], [`PbxSessionClosed`], [`GetDevicesUrl`].

use std::collections::BTreeMap;

use actix::prelude::*;

use crate::registry::DevicesUrlChanged;

/// Known Devices sysclient URLs.
pub struct ServiceDirectory {
    /// `devices.sysclient_url`: wins over everything learnt.
    configured: Option<String>,
    /// URL learnt per PBX session id; the lowest (oldest) session's URL is used.
    learnt: BTreeMap<u64, String>,
    /// Told of every change of the current URL (the phone registry).
    subscriber: Recipient<DevicesUrlChanged>,
}

impl ServiceDirectory {
    /// A directory with the configured override, if any.
    pub fn new(configured: Option<String>, subscriber: Recipient<DevicesUrlChanged>) -> ServiceDirectory {
        ServiceDirectory {
            configured,
            learnt: BTreeMap::new(),
            subscriber,
        }
    }

    fn current(&self) -> Option<String> {
        self.configured
            .clone()
            .or_else(|| self.learnt.values().next().cloned())
    }
}

impl Actor for ServiceDirectory {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        if self.configured.is_some() {
            self.subscriber.do_send(DevicesUrlChanged(self.current()));
        }
    }
}

/// A PBX session's latest ServicesInfo named this Devices URL (or none).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DevicesUrlLearned {
    /// The PBX session.
    pub session: u64,
    /// The sysclient URL, `None` when Devices is no longer listed.
    pub url: Option<String>,
}

impl Handler<DevicesUrlLearned> for ServiceDirectory {
    type Result = ();

    fn handle(&mut self, msg: DevicesUrlLearned, _ctx: &mut Context<Self>) {
        let before = self.current();
        match msg.url {
            Some(url) => self.learnt.insert(msg.session, url),
            None => self.learnt.remove(&msg.session),
        };
        let after = self.current();
        if before != after {
            log::info!(
                "Devices sysclient URL is now {}",
                after.as_deref().unwrap_or("unknown")
            );
            self.subscriber.do_send(DevicesUrlChanged(after));
        }
    }
}

/// A PBX session ended: forget what it taught.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PbxSessionClosed(pub u64);

impl Handler<PbxSessionClosed> for ServiceDirectory {
    type Result = ();

    fn handle(&mut self, msg: PbxSessionClosed, ctx: &mut Context<Self>) {
        self.handle(
            DevicesUrlLearned {
                session: msg.0,
                url: None,
            },
            ctx,
        );
    }
}

/// Where Devices' sysclient endpoint is now.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct GetDevicesUrl;

impl Handler<GetDevicesUrl> for ServiceDirectory {
    type Result = Option<String>;

    fn handle(&mut self, _msg: GetDevicesUrl, _ctx: &mut Context<Self>) -> Option<String> {
        self.current()
    }
}
