//! XEP-0202: Entity Time — the server answers `<time xmlns='urn:xmpp:time'/>` with its
//! clock in UTC (`tzo` is always `+00:00`: a server has no user-facing time zone).

use starling_api::xmpp_parsers::{
    ns,
    time::{TimeQuery, TimeResult},
};
use starling_api::{Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "time",
    summary: "XEP-0202 Entity Time of the server",
    specs: &[SpecSupport { spec: Spec::Xep(202), version: "2.0", status: Support::Complete, features: &[ns::TIME] }],
    migrations: None,
    forget_user: None,
    start,
};

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    reg.disco_feature(Scope::Server, ns::TIME);
    reg.iq_get::<TimeQuery, _, _>(Scope::Server, now);
    Ok(())
}

async fn now(_ctx: Context, _req: IqRequest<TimeQuery>) -> IqResult {
    let result = TimeResult::from(chrono::Utc::now().fixed_offset());
    Ok(Some(result.into()))
}
