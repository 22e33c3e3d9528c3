// Drives xmpp.js (@xmpp/client) against Starling for tests/xmppjs_interop.rs: an
// independent client implementation of SASL2 (XEP-0388), Bind 2 (XEP-0386) and FAST
// (XEP-0484, HT-SHA-256-NONE).
//
// Phase 1 logs in with the password over STARTTLS, binds with Bind 2 and asks for a
// FAST token. Phase 2 is a new client with the same user-agent id, the saved token and
// a WRONG password: it can only come online through FAST. Each phase prints one JSON
// line on stdout; the exit code is non-zero when any phase failed. Phase 3 is the
// same with the token altered: the server must refuse it (and then the password).
//
// Usage: node xmppjs_fast.mjs <service> <domain> <username> <password> [peer-jid]
//   service: xmpp://127.0.0.1:PORT; peer-jid: when given, phase 2 sends it a message
//   whose body is "xmpp.js FAST <bound jid>".
// The server's certificate must be trusted by node: NODE_EXTRA_CA_CERTS (or
// NODE_TLS_REJECT_UNAUTHORIZED=0) in this process's environment.
// XMPPJS_DEBUG=1 writes the raw XML of both phases to stderr.
import { client, xml } from '@xmpp/client';

const [service, domain, username, password, peer] = process.argv.slice(2);
if (!service || !domain || !username || !password) {
  console.error('usage: node xmppjs_fast.mjs <service> <domain> <username> <password> [peer-jid]');
  process.exit(2);
}
const debug = !!process.env.XMPPJS_DEBUG;
const NS_SASL2 = 'urn:xmpp:sasl:2';
const NS_BIND2 = 'urn:xmpp:bind:0';
const NS_FAST = 'urn:xmpp:fast:0';
const TAG = 'xmppjs';
const userAgentId = crypto.randomUUID();
const userAgent = () =>
  xml('user-agent', { id: userAgentId }, xml('software', {}, 'xmpp.js'), xml('device', {}, 'starling interop test'));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// One client run: connects, authenticates and waits for 'online'; records what went
// over the wire (parsed) for the report.
async function run(phase, { password, token }) {
  const xmpp = client({ service, domain, username, password, resource: TAG, userAgent: userAgent() });
  xmpp.reconnect.stop();
  let saved = null;
  let onSaved;
  const tokenSaved = new Promise((resolve) => (onSaved = resolve));
  xmpp.fast.saveToken = async (t) => {
    saved = t;
    onSaved(t);
  };
  xmpp.fast.fetchToken = async () => token ?? null;
  xmpp.fast.deleteToken = async () => {
    report.token_deleted = true;
  };

  const report = {
    phase,
    ok: false,
    jid: null,
    secure: false,
    sasl2_offered: [],
    fast_offered: [],
    bind2_offered: false,
    attempts: [],
    bind2: false,
    additional_data: false,
    token_received: false,
    token_mechanism: null,
    token_expiry: null,
    token_deleted: false,
    error: null,
  };
  const log = (dir, s) => debug && process.stderr.write(`[${phase} ${dir}] ${s}\n`);
  const write = xmpp.write.bind(xmpp);
  xmpp.write = (s) => {
    log('OUT', s);
    return write(s);
  };
  const onData = xmpp._onData.bind(xmpp);
  xmpp._onData = (data) => {
    log('IN ', data.toString('utf8'));
    return onData(data);
  };
  xmpp.on('status', (status) => log('status', status));

  xmpp.on('element', (el) => {
    if (el.is('features', 'http://etherx.jabber.org/streams')) {
      report.secure = xmpp.isSecure();
      const auth = el.getChild('authentication', NS_SASL2);
      if (!auth) return;
      report.sasl2_offered = auth.getChildren('mechanism').map((m) => m.text());
      const inline = auth.getChild('inline');
      const fast = inline?.getChild('fast', NS_FAST);
      report.fast_offered = fast ? fast.getChildren('mechanism').map((m) => m.text()) : [];
      report.bind2_offered = !!inline?.getChild('bind', NS_BIND2);
    } else if (el.getNS() === NS_SASL2 && report.attempts.length > 0) {
      const attempt = report.attempts[report.attempts.length - 1];
      if (el.name === 'success') {
        attempt.result = 'success';
        report.bind2 = !!el.getChild('bound', NS_BIND2);
        report.additional_data = !!el.getChildText('additional-data');
        const t = el.getChild('token', NS_FAST);
        if (t) attempt.token = { expiry: t.attrs.expiry ?? null };
      } else if (el.name === 'failure') {
        const condition = el.children.find((c) => typeof c !== 'string' && c.name !== 'text')?.name;
        attempt.result = `failure: ${condition ?? '?'} ${el.getChildText('text') ?? ''}`.trim();
      } else if (el.name !== 'challenge') {
        attempt.result = el.name;
      }
    }
  });
  xmpp.on('send', (el) => {
    if (el.is('authenticate', NS_SASL2)) {
      report.attempts.push({
        mechanism: el.attrs.mechanism,
        fast: !!el.getChild('fast', NS_FAST),
        request_token: el.getChild('request-token', NS_FAST)?.attrs.mechanism ?? null,
        result: null,
      });
    }
  });
  const errors = [];
  xmpp.on('error', (err) => errors.push(err));

  try {
    const jid = await withTimeout(xmpp.start(), 20000, 'coming online');
    report.jid = jid.toString();
    report.secure = xmpp.isSecure();
    // The token arrives in the same <success/> as <bound/>; its save is asynchronous.
    const expectToken = report.attempts.some((a) => a.request_token || a.token);
    if (expectToken) await withTimeout(tokenSaved, 5000, 'the FAST token being saved');
    if (saved) {
      report.token_received = true;
      report.token_mechanism = saved.mechanism;
      report.token_expiry = saved.expiry ?? null;
    }
    if (peer && phase === 2) {
      await xmpp.send(xml('message', { to: peer, type: 'chat' }, xml('body', {}, `xmpp.js FAST ${report.jid}`)));
      // A round trip, so that the message has been handled before the stream closes.
      await withTimeout(xmpp.iqCaller.request(xml('iq', { type: 'get', to: domain }, xml('ping', { xmlns: 'urn:xmpp:ping' }))), 10000, 'ping');
    }
    report.ok = true;
  } catch (err) {
    report.error = String(err?.message ?? err);
    if (err?.condition) report.error = `${err.condition}: ${report.error}`;
  }
  if (errors.length && !report.error) report.error = errors.map((e) => String(e?.message ?? e)).join('; ');
  try {
    await withTimeout(xmpp.stop(), 5000, 'closing the stream');
  } catch {}
  return { report, token: saved };
}

function check1(r) {
  if (!r.ok) return `phase 1 (password login) failed: ${r.error}`;
  if (!r.secure) return 'phase 1 was not over TLS';
  if (r.attempts.length !== 1) return `phase 1 made ${r.attempts.length} SASL2 attempts`;
  if (!r.bind2) return 'phase 1 did not bind with Bind 2 (no <bound/> in <success/>)';
  if (r.fast_offered.length === 0) return 'phase 1: the server advertises no FAST (urn:xmpp:fast:0) in its SASL2 inline features';
  if (!r.attempts[0].request_token) return 'phase 1: xmpp.js sent no <request-token/>';
  if (!r.token_received) return 'phase 1: no FAST <token/> in the SASL2 <success/>';
  return null;
}

function check2(r) {
  const first = r.attempts[0];
  if (r.fast_offered.length === 0) return 'phase 2: the server advertises no FAST (urn:xmpp:fast:0) in its SASL2 inline features';
  if (!first || !first.mechanism?.startsWith('HT-')) return `phase 2: xmpp.js did not try FAST first (attempts: ${JSON.stringify(r.attempts)})`;
  if (first.result !== 'success') {
    return `phase 2: FAST authentication with ${first.mechanism} did not succeed (${first.result}); attempts: ${JSON.stringify(r.attempts)}`;
  }
  if (!r.ok) return `phase 2 failed after the FAST <success/>: ${r.error}`;
  if (!r.bind2) return 'phase 2 did not bind with Bind 2';
  if (!r.additional_data) return 'phase 2: the HT <success/> has no <additional-data/> (the Responder hashed token)';
  return null;
}

function check3(r) {
  const first = r.attempts[0];
  if (r.ok) return `phase 3: online with an altered token and a wrong password as ${r.jid}`;
  if (!first || !first.mechanism?.startsWith('HT-')) return `phase 3: xmpp.js did not try FAST first (attempts: ${JSON.stringify(r.attempts)})`;
  if (!first.result?.startsWith('failure: not-authorized')) return `phase 3: the altered token got ${first.result}, not <not-authorized/>`;
  return null;
}

let failed = false;
const phase1 = await run(1, { password });
phase1.report.failure = check1(phase1.report);
console.log(JSON.stringify(phase1.report));
failed ||= !!phase1.report.failure;

if (phase1.token) {
  const phase2 = await run(2, { password: `wrong-${password}`, token: phase1.token });
  phase2.report.failure = check2(phase2.report);
  console.log(JSON.stringify(phase2.report));
  failed ||= !!phase2.report.failure;
  const altered = { ...phase1.token, token: `${phase1.token.token}x` };
  const phase3 = await run(3, { password: `wrong-${password}`, token: altered });
  phase3.report.failure = check3(phase3.report);
  console.log(JSON.stringify(phase3.report));
  failed ||= !!phase3.report.failure;
} else {
  console.log(JSON.stringify({ phase: 2, ok: false, failure: 'phase 2 skipped: phase 1 saved no FAST token' }));
  failed = true;
}
process.exit(failed ? 1 : 0);
