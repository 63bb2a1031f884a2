//! The C entry points Mosquitto calls. Every one catches panics (a panic must never unwind into
//! Mosquitto) and fails closed: anything unexpected refuses the login or the topic.

use crate::ffi::{self, EvtAclCheck, EvtBasicAuth, MosquittoOpt, PluginId};
use crate::otter::{AuthnRequest, AuthzRequest, Options, Otter, Verdict};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What `mosquitto_plugin_init` hands Mosquitto as userdata.
struct Plugin {
    id: *mut PluginId,
    otter: Otter,
}

/// Mosquitto asks which plugin API this plugin speaks: v5, if it offers it.
///
/// # Safety
/// `supported_versions` points to `supported_version_count` ints (Mosquitto's contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_version(
    supported_version_count: c_int,
    supported_versions: *const c_int,
) -> c_int {
    guarded(-1, || {
        let count = usize::try_from(supported_version_count).unwrap_or(0);
        if supported_versions.is_null() || count == 0 {
            return -1;
        }
        // SAFETY: Mosquitto passes an array of `count` ints.
        let versions = unsafe { std::slice::from_raw_parts(supported_versions, count) };
        if versions.contains(&ffi::MOSQ_PLUGIN_VERSION) {
            ffi::MOSQ_PLUGIN_VERSION
        } else {
            -1
        }
    })
}

/// Reads the `plugin_opt_*` options and registers the auth and ACL callbacks.
///
/// # Safety
/// Called by Mosquitto with valid pointers, as mosquitto_plugin.h describes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_init(
    identifier: *mut PluginId,
    userdata: *mut *mut c_void,
    options: *mut MosquittoOpt,
    option_count: c_int,
) -> c_int {
    guarded(ffi::MOSQ_ERR_INVAL, || {
        // SAFETY: Mosquitto's option array, valid for this call.
        let pairs = unsafe { option_pairs(options, option_count) };
        let options = match Options::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(options) => options,
            Err(e) => {
                log(ffi::MOSQ_LOG_ERR, &format!("otter-auth: {e}"));
                return ffi::MOSQ_ERR_INVAL;
            }
        };
        if userdata.is_null() {
            return ffi::MOSQ_ERR_INVAL;
        }
        let url = options.otter_url.clone();
        let plugin = Box::into_raw(Box::new(Plugin {
            id: identifier,
            otter: Otter::new(options),
        }));
        // SAFETY: registering with Mosquitto's own identifier; `plugin` lives until cleanup.
        let rc = unsafe { register(identifier, plugin.cast()) };
        if rc != ffi::MOSQ_ERR_SUCCESS {
            log(ffi::MOSQ_LOG_ERR, "otter-auth: cannot register callbacks");
            // SAFETY: undo what was registered, then free what we allocated above.
            unsafe {
                unregister(identifier);
                drop(Box::from_raw(plugin));
            }
            return rc;
        }
        // SAFETY: checked non-null above.
        unsafe { *userdata = plugin.cast() };
        log(
            ffi::MOSQ_LOG_INFO,
            &format!("otter-auth: devices are authenticated by Otter at {url}"),
        );
        ffi::MOSQ_ERR_SUCCESS
    })
}

/// Unregisters the callbacks and frees the plugin state.
///
/// # Safety
/// `userdata` is what `mosquitto_plugin_init` stored (or null).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *mut MosquittoOpt,
    _option_count: c_int,
) -> c_int {
    guarded(ffi::MOSQ_ERR_SUCCESS, || {
        if userdata.is_null() {
            return ffi::MOSQ_ERR_SUCCESS;
        }
        let plugin: Box<Plugin> = unsafe { Box::from_raw(userdata.cast()) };
        // SAFETY: the identifier the callbacks were registered with.
        unsafe { unregister(plugin.id) };
        ffi::MOSQ_ERR_SUCCESS
    })
}

unsafe fn register(id: *mut PluginId, userdata: *mut c_void) -> c_int {
    let events: [(c_int, ffi::GenericCallback); 2] = [
        (ffi::MOSQ_EVT_BASIC_AUTH, on_basic_auth),
        (ffi::MOSQ_EVT_ACL_CHECK, on_acl_check),
    ];
    for (event, callback) in events {
        // SAFETY: see the caller.
        let rc = unsafe {
            ffi::mosquitto_callback_register(id, event, callback, std::ptr::null(), userdata)
        };
        if rc != ffi::MOSQ_ERR_SUCCESS {
            return rc;
        }
    }
    ffi::MOSQ_ERR_SUCCESS
}

unsafe fn unregister(id: *mut PluginId) {
    // SAFETY: see the callers; unregistering a callback never registered is harmless.
    unsafe {
        ffi::mosquitto_callback_unregister(
            id,
            ffi::MOSQ_EVT_BASIC_AUTH,
            on_basic_auth,
            std::ptr::null(),
        );
        ffi::mosquitto_callback_unregister(
            id,
            ffi::MOSQ_EVT_ACL_CHECK,
            on_acl_check,
            std::ptr::null(),
        );
    }
}

/// MOSQ_EVT_BASIC_AUTH: a CONNECT with a user name and password.
unsafe extern "C" fn on_basic_auth(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(ffi::MOSQ_ERR_AUTH, || {
        // SAFETY: Mosquitto passes a `mosquitto_evt_basic_auth` and our userdata.
        let (Some(ev), Some(plugin)) = (
            unsafe { event_data.cast::<EvtBasicAuth>().as_ref() },
            unsafe { userdata.cast::<Plugin>().as_ref() },
        ) else {
            return ffi::MOSQ_ERR_AUTH;
        };
        // SAFETY: the strings are Mosquitto's, valid during the callback.
        let (client_id, username, password, peer) = unsafe {
            (
                text(ffi::mosquitto_client_id(ev.client)),
                text(ev.username),
                text(ev.password),
                text(ffi::mosquitto_client_address(ev.client)),
            )
        };
        let Some(Ok(client_id)) = client_id else {
            return ffi::MOSQ_ERR_AUTH;
        };
        let (Ok(username), Ok(password), Ok(peer)) =
            (username.transpose(), password.transpose(), peer.transpose())
        else {
            return ffi::MOSQ_ERR_AUTH;
        };
        let req = AuthnRequest {
            clientid: client_id,
            username,
            password,
            peerhost: peer,
        };
        match plugin.otter.authn(&req) {
            Ok(Verdict::Allow { .. }) => ffi::MOSQ_ERR_SUCCESS,
            Ok(Verdict::Deny) => ffi::MOSQ_ERR_AUTH,
            Err(e) => {
                log(
                    ffi::MOSQ_LOG_WARNING,
                    &format!("otter-auth: login of {client_id} refused: {e}"),
                );
                ffi::MOSQ_ERR_AUTH
            }
        }
    })
}

/// MOSQ_EVT_ACL_CHECK: publish (WRITE), subscribe (SUBSCRIBE) or delivery (READ) of a topic.
unsafe extern "C" fn on_acl_check(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(ffi::MOSQ_ERR_ACL_DENIED, || {
        // SAFETY: Mosquitto passes a `mosquitto_evt_acl_check` and our userdata.
        let (Some(ev), Some(plugin)) = (
            unsafe { event_data.cast::<EvtAclCheck>().as_ref() },
            unsafe { userdata.cast::<Plugin>().as_ref() },
        ) else {
            return ffi::MOSQ_ERR_ACL_DENIED;
        };
        let action = match ev.access {
            ffi::MOSQ_ACL_WRITE => "publish",
            // Receiving a message is allowed exactly when subscribing to its topic would be.
            ffi::MOSQ_ACL_SUBSCRIBE | ffi::MOSQ_ACL_READ => "subscribe",
            ffi::MOSQ_ACL_UNSUBSCRIBE => return ffi::MOSQ_ERR_SUCCESS,
            _ => return ffi::MOSQ_ERR_ACL_DENIED,
        };
        // SAFETY: the strings are Mosquitto's, valid during the callback.
        let (client_id, username, topic, peer) = unsafe {
            (
                text(ffi::mosquitto_client_id(ev.client)),
                text(ffi::mosquitto_client_username(ev.client)),
                text(ev.topic),
                text(ffi::mosquitto_client_address(ev.client)),
            )
        };
        let (Some(Ok(client_id)), Some(Ok(topic))) = (client_id, topic) else {
            return ffi::MOSQ_ERR_ACL_DENIED;
        };
        let (Ok(username), Ok(peer)) = (username.transpose(), peer.transpose()) else {
            return ffi::MOSQ_ERR_ACL_DENIED;
        };
        let req = AuthzRequest {
            clientid: client_id,
            username,
            topic,
            action,
            peerhost: peer,
        };
        match plugin.otter.authz(&req) {
            Ok(true) => ffi::MOSQ_ERR_SUCCESS,
            Ok(false) => ffi::MOSQ_ERR_ACL_DENIED,
            Err(e) => {
                log(
                    ffi::MOSQ_LOG_WARNING,
                    &format!("otter-auth: {action} of {topic} by {client_id} refused: {e}"),
                );
                ffi::MOSQ_ERR_ACL_DENIED
            }
        }
    })
}

/// Runs `f`, turning a panic into `on_panic` (unwinding into C is undefined behaviour).
fn guarded(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// A C string as UTF-8: `None` for NULL, `Some(Err)` for bytes that are not UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives `'a`.
unsafe fn text<'a>(p: *const c_char) -> Option<Result<&'a str, std::str::Utf8Error>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: see above.
    Some(unsafe { CStr::from_ptr(p) }.to_str())
}

/// The options as owned `(key, value)` pairs; entries with NULL or non-UTF-8 text are skipped.
unsafe fn option_pairs(options: *mut MosquittoOpt, count: c_int) -> Vec<(String, String)> {
    let count = usize::try_from(count).unwrap_or(0);
    if options.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: Mosquitto passes an array of `count` options.
    let options = unsafe { std::slice::from_raw_parts(options, count) };
    options
        .iter()
        .filter_map(|o| {
            // SAFETY: Mosquitto's strings, valid during init.
            let (key, value) = unsafe { (text(o.key)?.ok()?, text(o.value)?.ok()?) };
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Writes to Mosquitto's log.
fn log(level: c_int, message: &str) {
    let Ok(message) = CString::new(message.replace('\0', "?")) else {
        return;
    };
    // SAFETY: a constant "%s" format with one C string argument.
    unsafe { ffi::mosquitto_log_printf(level, c"%s".as_ptr(), message.as_ptr()) };
}
