//! The service directory: where innovaphone Devices' sysclient endpoint is, as learnt from
//! the PBX connections' ServicesInfo, or fixed by `devices.sysclient_url`.
//!
//! A URL once learnt is kept when the PBX connection that taught it goes away or stops listing
//! Devices: the phones' links stay where they are (a PBX restart must not drop every link and
//! make them all reconnect at once); only a different URL moves them.
//!
//! Messages it takes: [`DevicesUrlLearned`], [`PbxSessionClosed`], [`CurrentDevicesUrl`]; it
//! tells the registry
//! [`DevicesUrlChanged`].

use std::collections::BTreeMap;

use actix::prelude::*;

/// Devices' sysclient URL changed: told to whoever keeps the phones' links (the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DevicesUrlChanged(pub Option<String>);

/// Known Devices sysclient URLs.
pub struct ServiceDirectory {
    /// `devices.sysclient_url`: wins over everything learnt.
    configured: Option<String>,
    /// URL learnt per PBX session id; the lowest (oldest) live session's URL is used.
    learnt: BTreeMap<u64, String>,
    /// The URL in use, kept when no live session names one.
    current: Option<String>,
    /// Told of every change of the URL in use (the phone registry).
    subscriber: Recipient<DevicesUrlChanged>,
    /// Told if this actor ends outside a shutdown.
    fatal: crate::ops::fatal::Fatal,
}

impl ServiceDirectory {
    /// A directory with the configured override, if any.
    pub fn new(
        configured: Option<String>,
        subscriber: Recipient<DevicesUrlChanged>,
        fatal: crate::ops::fatal::Fatal,
    ) -> ServiceDirectory {
        ServiceDirectory {
            current: configured.clone(),
            configured,
            learnt: BTreeMap::new(),
            subscriber,
            fatal,
        }
    }

    fn update(&mut self) {
        let wanted = self
            .configured
            .clone()
            .or_else(|| self.learnt.values().next().cloned());
        if wanted.is_some() && wanted != self.current {
            self.current = wanted;
            log::info!(
                "Devices sysclient URL is now {}",
                self.current.as_deref().unwrap_or("unknown")
            );
            self.subscriber.do_send(DevicesUrlChanged(self.current.clone()));
        }
    }
}

impl Actor for ServiceDirectory {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        if self.current.is_some() {
            self.subscriber.do_send(DevicesUrlChanged(self.current.clone()));
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.fatal.report("the service directory", "ended");
    }
}

/// A PBX session's latest ServicesInfo named this Devices URL (or none).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DevicesUrlLearned {
    /// The PBX session.
    pub session: u64,
    /// The sysclient URL, `None` when Devices is not listed.
    pub url: Option<String>,
}

impl Handler<DevicesUrlLearned> for ServiceDirectory {
    type Result = ();

    fn handle(&mut self, msg: DevicesUrlLearned, _ctx: &mut Context<Self>) {
        match msg.url {
            Some(url) => self.learnt.insert(msg.session, url),
            None => self.learnt.remove(&msg.session),
        };
        self.update();
    }
}

/// A PBX session ended: its URL no longer counts (but stays in use until another is learnt).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PbxSessionClosed(pub u64);

impl Handler<PbxSessionClosed> for ServiceDirectory {
    type Result = ();

    fn handle(&mut self, msg: PbxSessionClosed, _ctx: &mut Context<Self>) {
        self.learnt.remove(&msg.0);
        self.update();
    }
}

/// The Devices URL in use, if any (readiness).
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct CurrentDevicesUrl;

impl Handler<CurrentDevicesUrl> for ServiceDirectory {
    type Result = Option<String>;

    fn handle(&mut self, _msg: CurrentDevicesUrl, _ctx: &mut Context<Self>) -> Option<String> {
        self.current.clone()
    }
}

#[cfg(feature = "simulators")]
impl Handler<crate::ops::fatal::InjectFault> for ServiceDirectory {
    type Result = ();

    fn handle(&mut self, _msg: crate::ops::fatal::InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the ServiceDirectory singleton");
    }
}
