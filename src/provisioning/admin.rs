//! Administrative operations on a phone's downloads, for the admin surface: reopen the
//! enrolment window, pin the phone to a vendor, read its audit, read the password of the
//! phone's own web admin.

use super::{AuditEntry, Vendors};
use crate::mac::Mac;
use crate::seal::SealPurpose;
use crate::seal::{Sealer, Secret};
use crate::store::{Store, StoreError};

/// Why an admin operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such phone.
    #[error("no phone {0}")]
    UnknownPhone(Mac),
    /// No such vendor.
    #[error("no vendor named {0:?}")]
    UnknownVendor(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed secret could not be opened (wrong seal key, damaged record).
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

fn existing(store: &dyn Store, mac: &Mac) -> Result<(), AdminError> {
    match store.get_phone(mac)? {
        Some(_) => Ok(()),
        None => Err(AdminError::UnknownPhone(*mac)),
    }
}

/// Reopens the phone's enrolment window from `now`: its files are served once more without
/// credentials until it fetches with its provisioning credentials (e.g. after a factory reset).
pub fn reopen_enrolment(store: &dyn Store, mac: &Mac, now: u64) -> Result<(), AdminError> {
    existing(store, mac)?;
    store.update_access(mac, &mut |access| {
        access.window_reopened_at = Some(now);
        access.enrolled_generation = None;
        access.handed_out_generation = None;
    })?;
    Ok(())
}

/// Pins the phone to `vendor` (overriding OUI and User-Agent), or unpins it with `None`.
pub fn pin_vendor(
    store: &dyn Store,
    vendors: &Vendors,
    mac: &Mac,
    vendor: Option<&str>,
) -> Result<(), AdminError> {
    existing(store, mac)?;
    if let Some(name) = vendor
        && vendors.by_name(name).is_none()
    {
        return Err(AdminError::UnknownVendor(name.to_string()));
    }
    store.update_access(mac, &mut |access| {
        access.pinned_vendor = vendor.map(str::to_string)
    })?;
    Ok(())
}

/// The password of the phone's own web admin (user `admin`) that its files set: Devices'
/// administrative password when Devices deployed one every vendor can carry (1 to 32 letters
/// and digits), else the phone's random one.
pub fn web_password(store: &dyn Store, sealer: &Sealer, mac: &Mac) -> Result<Option<Secret>, AdminError> {
    let record = store.get_phone(mac)?.ok_or(AdminError::UnknownPhone(*mac))?;
    if let Some(sealed) = &record.admin_password {
        let deployed = sealer.open(sealed, &SealPurpose::AdminPassword(*mac))?;
        if super::context::usable_admin_password(deployed.expose()) {
            return Ok(Some(deployed));
        }
    }
    match &record.web_password {
        Some(sealed) => Ok(Some(sealer.open(sealed, &SealPurpose::WebPassword(*mac))?)),
        None => Ok(None),
    }
}

/// The phone's latest `limit` downloads, oldest first.
pub fn audit(store: &dyn Store, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, AdminError> {
    existing(store, mac)?;
    Ok(store.audit(mac, limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::PhoneRecord;
    use crate::provisioning::Decision;
    use crate::store::MemoryStore;
    use crate::store::conformance::sample_record;

    #[test]
    fn reopen_and_pin() {
        let store = MemoryStore::new();
        let vendors = Vendors::builtin();
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        assert!(matches!(
            reopen_enrolment(&store, &mac, 5),
            Err(AdminError::UnknownPhone(_))
        ));
        let record = sample_record("0015651a2b3c", 1);
        store.put_phone(&record).unwrap();
        let window = 60;
        let later = record.provisioned_at + 3600;
        store
            .update_access(&mac, &mut |a| a.enrolled_generation = Some(record.generation))
            .unwrap();
        assert_eq!(
            store
                .get_access(&mac)
                .unwrap()
                .decide(&record, later, window, false, false),
            Decision::Unauthorized
        );

        reopen_enrolment(&store, &mac, later).unwrap();
        let access = store.get_access(&mac).unwrap();
        assert_eq!(
            access.decide(&record, later + 10, window, false, false),
            Decision::Serve { enrolling: true }
        );
        assert_eq!(
            access.decide(&record, later + window, window, false, false),
            Decision::Unauthorized,
            "closes again"
        );

        pin_vendor(&store, &vendors, &mac, Some("snom")).unwrap();
        assert_eq!(
            store.get_access(&mac).unwrap().pinned_vendor.as_deref(),
            Some("snom")
        );
        assert!(matches!(
            pin_vendor(&store, &vendors, &mac, Some("nokia")),
            Err(AdminError::UnknownVendor(_))
        ));
        pin_vendor(&store, &vendors, &mac, None).unwrap();
        assert_eq!(store.get_access(&mac).unwrap().pinned_vendor, None);
        assert!(audit(&store, &mac, 10).unwrap().is_empty());
    }

    #[test]
    fn a_file_is_handed_out_once_without_credentials() {
        let store = MemoryStore::new();
        let record = sample_record("0015651a2b3c", 1);
        store.put_phone(&record).unwrap();
        let mac = record.mac;
        let now = record.provisioned_at + 1;
        let first = store
            .get_access(&mac)
            .unwrap()
            .decide(&record, now, 600, true, false);
        assert_eq!(first, Decision::Serve { enrolling: true });
        store
            .update_access(&mac, &mut |a| a.handed_out_generation = Some(record.generation))
            .unwrap();
        let access = store.get_access(&mac).unwrap();
        assert_eq!(
            access.decide(&record, now + 1, 600, true, false),
            Decision::Unauthorized
        );
        assert_eq!(
            access.decide(&record, now + 1, 600, true, true),
            Decision::Serve { enrolling: false }
        );
        // A new ProvisioningPhone (new generation) hands out its file once more.
        let newer = PhoneRecord {
            generation: record.generation + 1,
            ..record.clone()
        };
        assert_eq!(
            access.decide(&newer, now + 1, 600, true, false),
            Decision::Serve { enrolling: true }
        );
        // An admin's reopening does too.
        reopen_enrolment(&store, &mac, now + 2).unwrap();
        assert_eq!(
            store
                .get_access(&mac)
                .unwrap()
                .decide(&record, now + 3, 600, true, false),
            Decision::Serve { enrolling: true }
        );
    }

    #[test]
    fn the_web_password_is_readable_by_an_admin() {
        let store = MemoryStore::new();
        let sealer = Sealer::from_key(&[3; 32]);
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        assert!(matches!(
            web_password(&store, &sealer, &mac),
            Err(AdminError::UnknownPhone(_))
        ));
        let mut record = sample_record("0015651a2b3c", 1);
        record.web_password = Some(
            sealer
                .seal(&Secret::new("Random16chars123"), &SealPurpose::WebPassword(mac))
                .unwrap(),
        );
        store.put_phone(&record).unwrap();
        assert_eq!(
            web_password(&store, &sealer, &mac).unwrap().unwrap().expose(),
            "Random16chars123"
        );
        record.admin_password = Some(
            sealer
                .seal(&Secret::new("fromDevices7"), &SealPurpose::AdminPassword(mac))
                .unwrap(),
        );
        store.put_phone(&record).unwrap();
        assert_eq!(
            web_password(&store, &sealer, &mac).unwrap().unwrap().expose(),
            "fromDevices7",
            "Devices' administrative password wins"
        );
        record.admin_password = Some(
            sealer
                .seal(&Secret::new("a:b"), &SealPurpose::AdminPassword(mac))
                .unwrap(),
        );
        store.put_phone(&record).unwrap();
        assert_eq!(
            web_password(&store, &sealer, &mac).unwrap().unwrap().expose(),
            "Random16chars123",
            "one a vendor cannot carry is not used"
        );
    }
}
