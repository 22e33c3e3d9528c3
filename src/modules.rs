//! The list of modules compiled into this server — the only file that names module
//! crates. Which of them run is decided by `[modules] enabled` in the config.

use starling_api::ModuleSpec;

/// Every module this binary can run, in start order.
pub static ALL: &[&ModuleSpec] = &[
    &starling_mod_disco::MODULE,
    &starling_mod_roster::MODULE,
    &starling_mod_offline::MODULE,
    &starling_mod_mam::MODULE,
    &starling_mod_pep::MODULE,
    &starling_mod_private::MODULE,
    &starling_mod_muc::MODULE,
    &starling_mod_carbons::MODULE,
    &starling_mod_vcard::MODULE,
    &starling_mod_avatar::MODULE,
    &starling_mod_blocking::MODULE,
    &starling_mod_adhoc::MODULE,
    &starling_mod_admin::MODULE,
    &starling_mod_register::MODULE,
    &starling_mod_last::MODULE,
    &starling_mod_ping::MODULE,
    &starling_mod_version::MODULE,
    &starling_mod_time::MODULE,
    &starling_mod_upload::MODULE,
    &starling_mod_push::MODULE,
    &starling_mod_push_gateway::MODULE,
    &starling_mod_contact_info::MODULE,
    &starling_mod_external_services::MODULE,
    &starling_mod_proxy65::MODULE,
    // XEP-0114 lives in the core: it needs the core's XML stream reader.
    &crate::component::MODULE,
];

/// The module called `name`, if compiled in.
pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// Names of all compiled-in modules, for error messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|m| m.name).collect()
}
