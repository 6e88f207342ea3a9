//! How `pam_otp.so` reaches Redis: through the client object `pam_otp_redis.so`, installed
//! next to it and loaded only when a login has `store = "redis"`, so that file-store logins
//! never map the Redis client and TLS (measured: +15–22 µs per `dlopen` when linked in).
//! Requests and replies cross the C boundary as JSON (`sys::redis_protocol::ClientRequest`).

use std::ffi::{c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::companion::{check_root_only, find_beside_module, module_directory};
use crate::policy::RedisSettings;
use crate::redis_protocol::{
    ClientReply, ClientRequest, RedisStoreError, SharedRead, WriteOutcome, CLIENT_PROTOCOL,
};
use pam_otp_core::fleet::RecordKeys;

/// The names the client object may have next to the module: installed, and as cargo
/// builds it (`target/*/libpam_otp_redis.so` beside `libpam_otp.so`); and, for the setuid
/// checker installed in `<multiarch>/pam-otp/`, in the module directory beside it.
const CLIENT_NAMES: [&str; 3] = [
    "pam_otp_redis.so",
    "libpam_otp_redis.so",
    "../security/pam_otp_redis.so",
];

type Protocol = unsafe extern "C" fn() -> u32;
type NewSession = unsafe extern "C" fn() -> *mut c_void;
type Serve = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut usize) -> *mut u8;
type Free = unsafe extern "C" fn(*mut u8, usize);
type DropSession = unsafe extern "C" fn(*mut c_void);

/// The client object's entry points.
struct Api {
    new_session: NewSession,
    serve: Serve,
    free: Free,
    drop_session: DropSession,
}

/// Loaded once per process and never unloaded (a Rust object may not be unloaded safely).
static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn client_error(why: String) -> RedisStoreError {
    RedisStoreError::Client(format!("redis: {why}; refused"))
}

/// The client object beside the module; root's, and writable by root only, like the module.
fn client_path() -> Result<PathBuf, String> {
    let path = find_beside_module(&CLIENT_NAMES)?.ok_or_else(|| {
        let dir = module_directory().unwrap_or_default();
        format!(
            "store = \"redis\" needs pam_otp_redis.so next to pam_otp.so in {}",
            dir.display()
        )
    })?;
    check_root_only(&path)?;
    Ok(path)
}

/// A symbol of the loaded client object.
fn symbol(handle: *mut c_void, name: &str) -> Result<*mut c_void, String> {
    let c_name = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: `handle` came from a successful dlopen and is never closed; `c_name` is a
    // NUL-terminated string.
    let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
    if address.is_null() {
        return Err(format!("pam_otp_redis.so has no {name}"));
    }
    Ok(address)
}

fn load() -> Result<Api, String> {
    let path = client_path()?;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path to a root-owned object beside the module. RTLD_LOCAL
    // keeps its symbols (a second Rust standard library) out of the process's namespace;
    // RTLD_NODELETE keeps it mapped, as Rust code must not be unloaded.
    let handle = unsafe {
        libc::dlopen(
            c_path.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE,
        )
    };
    if handle.is_null() {
        // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libdl.
        let why = unsafe {
            let message = libc::dlerror();
            if message.is_null() {
                "unknown error".into()
            } else {
                CStr::from_ptr(message).to_string_lossy().into_owned()
            }
        };
        return Err(format!("cannot load {}: {why}", path.display()));
    }
    let address = symbol(handle, "pam_otp_redis_protocol")?;
    // SAFETY: this and each transmute below: the symbols are the client object's
    // `extern "C"` functions of exactly these signatures (`crates/redis-client/src/lib.rs`, same
    // build); the protocol number is checked before any other is called.
    let protocol = unsafe { std::mem::transmute::<*mut c_void, Protocol>(address) };
    // SAFETY: see above; takes no arguments.
    let version = unsafe { protocol() };
    if version != CLIENT_PROTOCOL {
        return Err(format!(
            "{} speaks protocol {version}, pam_otp.so {CLIENT_PROTOCOL}: install both from one build",
            path.display()
        ));
    }
    // SAFETY: as above.
    unsafe {
        Ok(Api {
            new_session: std::mem::transmute::<*mut c_void, NewSession>(symbol(
                handle,
                "pam_otp_redis_new_session",
            )?),
            serve: std::mem::transmute::<*mut c_void, Serve>(symbol(
                handle,
                "pam_otp_redis_serve",
            )?),
            free: std::mem::transmute::<*mut c_void, Free>(symbol(handle, "pam_otp_redis_free")?),
            drop_session: std::mem::transmute::<*mut c_void, DropSession>(symbol(
                handle,
                "pam_otp_redis_drop_session",
            )?),
        })
    }
}

/// One connection to the fleet's Redis, held by the client object, for one login.
pub struct RedisClient {
    api: &'static Api,
    session: *mut c_void,
}

impl RedisClient {
    /// Loads the client object (once per process) and connects as `settings` say.
    pub fn connect(settings: &RedisSettings) -> Result<RedisClient, RedisStoreError> {
        let api = API
            .get_or_init(load)
            .as_ref()
            .map_err(|why| client_error(why.clone()))?;
        // SAFETY: takes no arguments; returns an owned session or NULL.
        let session = unsafe { (api.new_session)() };
        if session.is_null() {
            return Err(client_error("the client object made no session".into()));
        }
        let mut client = RedisClient { api, session };
        match client.ask(&ClientRequest::Connect(settings.clone()))? {
            ClientReply::Done => Ok(client),
            other => Err(unexpected(other)),
        }
    }

    fn ask(&mut self, request: &ClientRequest) -> Result<ClientReply, RedisStoreError> {
        let bytes = serde_json::to_vec(request).map_err(|e| client_error(e.to_string()))?;
        let mut length = 0usize;
        // SAFETY: `session` is this client's own live session; `bytes` is valid for its
        // length; the client object writes the reply's length into `length`.
        let reply =
            unsafe { (self.api.serve)(self.session, bytes.as_ptr(), bytes.len(), &mut length) };
        if reply.is_null() {
            return Err(client_error("the client object failed".into()));
        }
        // SAFETY: the client object returned `length` initialised bytes at `reply`, which
        // stay valid until handed back to its `free` below.
        let decoded = serde_json::from_slice(unsafe { std::slice::from_raw_parts(reply, length) });
        // SAFETY: the pointer and length the client object returned, given back once.
        unsafe { (self.api.free)(reply, length) };
        match decoded.map_err(|e| client_error(format!("unreadable reply: {e}")))? {
            ClientReply::Failed(text) => Err(RedisStoreError::Client(text)),
            reply => Ok(reply),
        }
    }

    /// The person's record and the server's clock.
    pub fn read(&mut self, keys: &RecordKeys) -> Result<SharedRead, RedisStoreError> {
        match self.ask(&ClientRequest::Read { keys: keys.all() })? {
            ClientReply::Read(read) => Ok(read),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the record by `state` if its version is still `expected`.
    pub fn write(
        &mut self,
        keys: &RecordKeys,
        expected: u64,
        state: Vec<u8>,
    ) -> Result<WriteOutcome, RedisStoreError> {
        let request = ClientRequest::Write {
            key: keys.record.clone(),
            expected,
            state,
        };
        match self.ask(&request)? {
            ClientReply::Write(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// After an accepted code: Ok once `redis_replicas` replicas hold it.
    pub fn wait_for_replicas(&mut self) -> Result<(), RedisStoreError> {
        match self.ask(&ClientRequest::WaitForReplicas)? {
            ClientReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: ClientReply) -> RedisStoreError {
    client_error(format!(
        "unexpected reply from the client object: {reply:?}"
    ))
}

impl Drop for RedisClient {
    fn drop(&mut self) {
        // SAFETY: the session is this client's and is dropped exactly once, here.
        unsafe { (self.api.drop_session)(self.session) };
    }
}
