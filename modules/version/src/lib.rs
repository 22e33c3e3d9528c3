//! XEP-0092: Software Version — the server answers `jabber:iq:version` queries addressed
//! to it with its name and version, and (unless `hide_os`) its operating system.

use serde::Deserialize;
use starling_api::xmpp_parsers::{
    ns,
    version::{VersionQuery, VersionResult},
};
use starling_api::{Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "version",
    summary: "XEP-0092 Software Version of the server",
    specs: &[SpecSupport { spec: Spec::Xep(92), version: "1.1", status: Support::Complete, features: &[ns::VERSION] }],
    migrations: None,
    forget_user: None,
    start,
};

/// `[modules.version]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VersionConfig {
    /// Leave the operating system out of the answer (default: false).
    hide_os: bool,
}

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    let config: VersionConfig = reg.config()?;
    reg.disco_feature(Scope::Server, ns::VERSION);
    reg.iq_get::<VersionQuery, _, _>(Scope::Server, move |ctx: Context, _req: IqRequest<VersionQuery>| {
        let os = (!config.hide_os).then(|| std::env::consts::OS.to_owned());
        async move {
            let info = ctx.server();
            let result = VersionResult { name: info.software.to_owned(), version: info.version.to_owned(), os };
            IqResult::Ok(Some(result.into()))
        }
    });
    Ok(())
}
