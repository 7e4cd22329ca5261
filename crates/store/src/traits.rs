//! The storage traits. One trait per area keeps each implementation file
//! small; [`Store`] gathers them for callers.

use async_trait::async_trait;
use openturret_domain::audit::{AuditEntry, AuditRecord, ChainBreak};
use openturret_domain::model::*;
use openturret_domain::secret::{PasswordHash, Secret};
use openturret_domain::*;

use crate::Result;

/// Every storage area, as one object callers hold (`Arc<dyn Store>`).
/// Audit records passed to a create method may carry an `object_id` ending
/// in `/` (such as `"7/"` for a contact of profile 7): the store appends the
/// new object's id. Otherwise the new id becomes the object id.
pub trait Store:
    AdminStore
    + ApiKeyStore
    + ProfileStore
    + ContactStore
    + LineStore
    + RecorderStore
    + EventStore
    + SettingsStore
    + CallStore
    + AuditStore
    + MaintenanceStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AdminStore
        + ApiKeyStore
        + ProfileStore
        + ContactStore
        + LineStore
        + RecorderStore
        + EventStore
        + SettingsStore
        + CallStore
        + AuditStore
        + MaintenanceStore
        + Send
        + Sync
        + 'static
{
}

/// A change to an administrator account.
#[derive(Clone, Debug, Default)]
pub struct AdminChanges {
    pub enabled: Option<bool>,
    /// A new password hash and whether it must be changed at next login.
    pub password: Option<(PasswordHash, bool)>,
}

#[async_trait]
pub trait AdminStore {
    async fn count_admins(&self) -> Result<i64>;
    async fn list_admins(&self) -> Result<Vec<Admin>>;
    async fn get_admin(&self, id: AdminId) -> Result<Admin>;
    /// The account and its hash, for a login. `None` if no such username.
    async fn admin_credentials(&self, username: &str) -> Result<Option<(Admin, PasswordHash)>>;
    async fn create_admin(
        &self,
        username: &str,
        password: PasswordHash,
        must_change_password: bool,
        audit: AuditRecord,
    ) -> Result<Admin>;
    /// Disabling an admin or changing their password also ends their
    /// sessions.
    async fn update_admin(
        &self,
        id: AdminId,
        changes: AdminChanges,
        audit: AuditRecord,
    ) -> Result<Admin>;
    async fn delete_admin(&self, id: AdminId, audit: AuditRecord) -> Result<()>;

    /// Stores a session under the SHA-256 of its token (the token itself is
    /// never stored).
    async fn create_session(
        &self,
        token_hash: [u8; 32],
        admin: AdminId,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// The enabled admin owning an unexpired session.
    async fn session_admin(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Admin>>;
    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()>;
    /// Ends every admin and turret session (a restored database must not
    /// revive the sessions it held when the backup was taken). Returns how
    /// many.
    async fn end_all_sessions(&self) -> Result<u64>;
}

/// One page of a list, with the total where it is cheap to count.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// The order of a profile list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProfileSort {
    #[default]
    NameAsc,
    NameDesc,
    CreatedAsc,
    CreatedDesc,
}

#[async_trait]
pub trait ProfileStore {
    /// Keeps a new turret session under the SHA-256 of its resume token,
    /// so that it survives a restart.
    async fn save_client_session(&self, token_hash: [u8; 32], s: ClientSession) -> Result<()>;
    /// Notes when a kept session was last seen and whether a connection is
    /// attached; a session no longer kept (ended meanwhile) stays ended.
    async fn touch_client_session(
        &self,
        token_hash: [u8; 32],
        last_seen: Timestamp,
        connected: bool,
    ) -> Result<()>;
    /// The stored turret session of a resume token.
    async fn client_session(&self, token_hash: [u8; 32]) -> Result<Option<ClientSession>>;
    async fn delete_client_session(&self, token_hash: [u8; 32]) -> Result<()>;
    /// Ends every stored turret session of a profile (its password changed).
    async fn delete_client_sessions(&self, profile: ProfileId) -> Result<u64>;
    /// A page of profiles; `name_contains` filters case-insensitively.
    async fn list_profiles(
        &self,
        name_contains: Option<&str>,
        sort: ProfileSort,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Profile>>;
    async fn get_profile(&self, id: ProfileId) -> Result<Profile>;
    async fn create_profile(&self, new: NewProfile, audit: AuditRecord) -> Result<Profile>;
    async fn update_profile(
        &self,
        id: ProfileId,
        changes: ProfileChanges,
        audit: AuditRecord,
    ) -> Result<Profile>;
    /// What deleting the profile would erase (SPEC rule 8).
    async fn profile_erasure_preview(&self, id: ProfileId) -> Result<ProfileErasure>;
    /// Deletes the profile with its contacts, keys, call memory, line
    /// assignments, consents and credentials.
    async fn delete_profile(&self, id: ProfileId, audit: AuditRecord) -> Result<ProfileErasure>;

    /// The profile's password hashes (for client logins and unlocks).
    async fn profile_secrets(&self, id: ProfileId) -> Result<ProfileSecrets>;
    /// The profile's call-memory keys (public key and wrapped private keys).
    async fn call_memory_keys(&self, id: ProfileId) -> Result<CallMemoryKeys>;
    /// Replaces the call-memory keys (re-wrapping after a password change,
    /// or the first key pair). Not audited: no person-visible data changes.
    async fn set_call_memory_keys(&self, id: ProfileId, keys: CallMemoryKeys) -> Result<()>;

    /// Erases again every profile the erasure ledger names that exists
    /// (after a restore, and at every start); one audit entry each, from
    /// `audit` with the profile's id. Returns the ids erased.
    async fn reapply_erasures(&self, audit: AuditRecord) -> Result<Vec<ProfileId>>;
    /// How many erasures the ledger holds.
    fn erasure_count(&self) -> Result<usize>;

    async fn list_consents(&self, profile: Option<ProfileId>) -> Result<Vec<Consent>>;
    async fn get_consent(&self, id: ConsentId) -> Result<Consent>;
    async fn create_consent(&self, new: NewConsent, audit: AuditRecord) -> Result<Consent>;
    /// Withdrawal equals deletion of the profile (SPEC rule 8).
    async fn withdraw_consent(&self, id: ConsentId, audit: AuditRecord) -> Result<ProfileErasure>;
}

/// How to search global contacts. Results are ordered by the searched key
/// (for a name, the name from its first matching word on) and then id;
/// `after` continues from the last item of the previous page.
#[derive(Clone, Debug, Default)]
pub struct GlobalContactQuery {
    /// The beginning of any word of the name, case-insensitive
    /// (`openturret_domain::words`): "alpha" finds "North Alpha Capital".
    pub name: Option<String>,
    /// Prefix of the normalised number (see `openturret_domain::number`).
    pub number_prefix: Option<String>,
    /// Continue after this contact (the last one of the previous page). The
    /// cursor is an id, not a name, so no personal value travels in it.
    pub after: Option<GlobalContactId>,
    pub limit: i64,
}

#[async_trait]
pub trait ContactStore {
    async fn list_local_contacts(&self, profile: ProfileId) -> Result<Vec<LocalContact>>;
    /// Every profile's local contacts (to build the caller-id index).
    async fn list_all_local_contacts(&self) -> Result<Vec<LocalContact>>;
    async fn get_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
    ) -> Result<LocalContact>;
    async fn create_local_contact(
        &self,
        profile: ProfileId,
        fields: ContactFields,
        audit: AuditRecord,
    ) -> Result<LocalContact>;
    async fn update_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
        fields: ContactFields,
        audit: AuditRecord,
    ) -> Result<LocalContact>;
    async fn delete_local_contact(
        &self,
        profile: ProfileId,
        id: LocalContactId,
        audit: AuditRecord,
    ) -> Result<()>;

    async fn list_speed_dials(&self, profile: ProfileId) -> Result<Vec<SpeedDial>>;
    async fn get_speed_dial(&self, profile: ProfileId, id: SpeedDialId) -> Result<SpeedDial>;
    async fn create_speed_dial(
        &self,
        profile: ProfileId,
        fields: SpeedDialFields,
        audit: AuditRecord,
    ) -> Result<SpeedDial>;
    async fn update_speed_dial(
        &self,
        profile: ProfileId,
        id: SpeedDialId,
        fields: SpeedDialFields,
        audit: AuditRecord,
    ) -> Result<SpeedDial>;
    async fn delete_speed_dial(
        &self,
        profile: ProfileId,
        id: SpeedDialId,
        audit: AuditRecord,
    ) -> Result<()>;

    /// A page of global contacts.
    async fn search_global_contacts(
        &self,
        query: &GlobalContactQuery,
    ) -> Result<Vec<GlobalContact>>;
    async fn get_global_contact(&self, id: GlobalContactId) -> Result<GlobalContact>;
    async fn create_global_contact(
        &self,
        fields: ContactFields,
        audit: AuditRecord,
    ) -> Result<GlobalContact>;
    /// Inserts many contacts in one transaction with one audit entry.
    async fn insert_global_contacts(
        &self,
        contacts: Vec<ContactFields>,
        audit: AuditRecord,
    ) -> Result<u64>;
    /// Imports a profile's local contacts in one transaction (all or
    /// nothing); a row matches an existing contact by name and number.
    async fn import_local_contacts(
        &self,
        profile: ProfileId,
        rows: Vec<(u64, ContactFields)>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>>;
    /// Imports a profile's speed dial keys in one transaction; a row
    /// matches an existing key by kind and position.
    async fn import_speed_dials(
        &self,
        profile: ProfileId,
        rows: Vec<(u64, SpeedDialFields)>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>>;
    /// Starts an all-or-nothing import of global contacts: rows are staged
    /// with [`GlobalImport::add`] and land only at [`GlobalImport::commit`];
    /// dropping the session changes nothing. Writers wait while it is open.
    async fn begin_global_import(&self) -> Result<Box<dyn GlobalImport + '_>>;
    async fn update_global_contact(
        &self,
        id: GlobalContactId,
        fields: ContactFields,
        audit: AuditRecord,
    ) -> Result<GlobalContact>;
    async fn delete_global_contact(&self, id: GlobalContactId, audit: AuditRecord) -> Result<()>;
}

/// What to do with an imported row whose name and number (normalised) match
/// an existing contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Refuse the whole import, naming the rows.
    Reject,
    /// Update the existing contact's fields 3 and 4 (and spelling).
    Update,
}

/// The outcome of a committed import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub inserted: u64,
    pub updated: u64,
}

/// An import in progress (one write transaction).
#[async_trait]
pub trait GlobalImport: Send {
    /// Stages rows, each with the line of the file it came from.
    async fn add(&mut self, rows: Vec<(u64, ContactFields)>) -> Result<()>;
    /// Applies the staged rows. With [`OnDuplicate::Reject`], rows that
    /// match existing contacts fail the whole import: `Err(lines)`.
    async fn commit(
        self: Box<Self>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>>;
}

#[async_trait]
pub trait LineStore {
    async fn list_lines(&self) -> Result<Vec<Line>>;
    async fn get_line(&self, id: LineId) -> Result<Line>;
    async fn create_line(
        &self,
        fields: LineFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Line>;
    /// `password: None` keeps the stored password.
    async fn update_line(
        &self,
        id: LineId,
        fields: LineFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Line>;
    async fn delete_line(&self, id: LineId, audit: AuditRecord) -> Result<()>;
    /// The decrypted password, for the Multi-Line Controller only.
    async fn line_password(&self, id: LineId) -> Result<Option<Secret>>;
    /// Every stored line password, decrypted, for the MLC's start (one
    /// query rather than one per line).
    async fn line_passwords(&self) -> Result<Vec<(LineId, Secret)>>;

    /// Imports lines in one transaction; a row matches an existing line by
    /// name. Passwords given are encrypted at once.
    async fn import_lines(
        &self,
        rows: Vec<(u64, LineFields, Option<Secret>)>,
        mode: OnDuplicate,
        audit: AuditRecord,
    ) -> Result<std::result::Result<ImportCounts, Vec<u64>>>;

    async fn list_profile_lines(&self, profile: ProfileId) -> Result<Vec<LineAssignment>>;
    /// The profiles showing `line` as a line key.
    async fn profiles_with_line(&self, line: LineId) -> Result<Vec<ProfileId>>;
    /// Shows `line` on `profile` at `position` (moving it if already shown).
    async fn assign_line(
        &self,
        assignment: LineAssignment,
        audit: AuditRecord,
    ) -> Result<LineAssignment>;
    async fn unassign_line(
        &self,
        profile: ProfileId,
        line: LineId,
        audit: AuditRecord,
    ) -> Result<()>;
}

#[async_trait]
/// API keys of external applications (issue 7).
#[async_trait]
pub trait ApiKeyStore {
    /// Stores a key under the SHA-256 of its token (the token is never
    /// stored). Unique name.
    async fn create_api_key(
        &self,
        name: &str,
        scope: &ApiKeyScope,
        expires_at: Option<Timestamp>,
        token_hash: [u8; 32],
        audit: AuditRecord,
    ) -> Result<ApiKey>;
    /// Every key, revoked and expired ones included, newest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn get_api_key(&self, id: ApiKeyId) -> Result<ApiKey>;
    async fn revoke_api_key(&self, id: ApiKeyId, audit: AuditRecord) -> Result<()>;
    /// The key with this token hash, whatever its state (callers check
    /// `ApiKey::is_active`).
    async fn api_key_by_hash(&self, token_hash: [u8; 32]) -> Result<Option<ApiKey>>;
    /// Records a use (the time only).
    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()>;
}

/// Voice recorders (issue 18), at most `MAX_RECORDERS`, with their
/// passwords encrypted like line passwords.
#[async_trait]
pub trait RecorderStore {
    async fn list_recorders(&self) -> Result<Vec<Recorder>>;
    async fn get_recorder(&self, id: RecorderId) -> Result<Recorder>;
    /// Refused beyond `MAX_RECORDERS` (`Invalid`, field `recorders`) or for
    /// a name in use (`Conflict`).
    async fn create_recorder(
        &self,
        fields: RecorderFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Recorder>;
    /// `password: None` keeps the stored one; `Some` of an empty secret
    /// clears it.
    async fn update_recorder(
        &self,
        id: RecorderId,
        fields: RecorderFields,
        password: Option<Secret>,
        audit: AuditRecord,
    ) -> Result<Recorder>;
    async fn delete_recorder(&self, id: RecorderId, audit: AuditRecord) -> Result<()>;
    /// Every recorder with its decrypted password, for the MLC only.
    async fn recorders_with_passwords(&self) -> Result<Vec<(Recorder, Option<Secret>)>>;
    /// Adds lines to the record of forwarding (one transaction).
    async fn log_recordings(&self, entries: Vec<RecordingLogEntry>) -> Result<()>;
    /// The record of forwarding in `[from, to)` (of calls `profile` held,
    /// when given), newest first.
    async fn list_recording_log(
        &self,
        from: Timestamp,
        to: Timestamp,
        profile: Option<ProfileId>,
        limit: i64,
    ) -> Result<Vec<RecordingLogEntry>>;
    /// Sets (or with `None` removes) the recording notice: 8 kHz samples.
    async fn set_recording_notice(
        &self,
        samples: Option<Vec<i16>>,
        audit: AuditRecord,
    ) -> Result<()>;
    /// The recording notice and when it was uploaded.
    async fn recording_notice(&self) -> Result<Option<(Vec<i16>, Timestamp)>>;
    /// Deletes the record of forwarding older than `cutoff` (the CDRs'
    /// retention); returns how many lines went.
    async fn purge_recording_log_before(
        &self,
        cutoff: Timestamp,
        audit: AuditRecord,
    ) -> Result<u64>;
}

/// The error log (issue 20): what the components report. Apart from the
/// audit chain; holds no personal value.
#[async_trait]
pub trait EventStore {
    /// Writes folded events in one transaction, in order: each either
    /// folds into entry `into` (its count grows, its last time and
    /// properties are the newest) or, with `None` or when that entry is
    /// gone, starts a new one. Returns the entries as written.
    async fn write_events(&self, writes: Vec<(Option<i64>, Folded)>) -> Result<Vec<EventEntry>>;
    /// Newest first (by `seq`), or oldest first when `after_seq` is set.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventEntry>>;
    /// How many entries at `level` last occurred at or after `since`, and
    /// how many times they occurred in all.
    async fn count_events(&self, level: EventLevel, since: Timestamp) -> Result<(u64, u64)>;
    /// Deletes entries whose last occurrence is before `cutoff` (the log
    /// retention); returns how many went.
    async fn purge_events_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64>;
}

#[async_trait]
pub trait SettingsStore {
    async fn get_settings(&self) -> Result<Settings>;
    async fn update_settings(
        &self,
        changes: SettingsChanges,
        audit: AuditRecord,
    ) -> Result<Settings>;
    /// The master password hash while it is enabled.
    async fn master_password_hash(&self) -> Result<Option<PasswordHash>>;
}

#[async_trait]
pub trait CallStore {
    /// Appends a sealed entry; if the profile then holds more than
    /// [`CALL_MEMORY_CAPACITY`] entries the oldest go (SPEC rule 6).
    async fn push_call_memory(
        &self,
        profile: ProfileId,
        at: Timestamp,
        sealed: Vec<u8>,
    ) -> Result<CallMemoryId>;
    /// Oldest first.
    async fn list_call_memory(&self, profile: ProfileId) -> Result<Vec<CallMemoryRecord>>;
    async fn delete_call_memory(
        &self,
        profile: ProfileId,
        id: CallMemoryId,
        audit: AuditRecord,
    ) -> Result<()>;

    /// Deletes call-memory entries written before `cutoff` (retention);
    /// audits the purge when anything went. Returns how many went.
    async fn purge_call_memory_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64>;
    /// Deletes CDRs recorded before `cutoff` (retention), audited.
    async fn purge_cdrs_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64>;

    async fn insert_cdr(&self, cdr: Cdr) -> Result<CdrId>;
    /// Several CDRs in one transaction (a busy MLC's burst of ended calls).
    async fn insert_cdrs(&self, cdrs: Vec<Cdr>) -> Result<Vec<CdrId>>;
    /// CDRs as the filter says, oldest first.
    async fn list_cdrs(&self, filter: &CdrFilter) -> Result<Vec<Cdr>>;
}

/// A turret session as stored (issue 14, point 10): who, since when, and
/// whether a connection was attached when it was last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSession {
    pub profile: ProfileId,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    pub connected: bool,
}

/// Which CDRs to read.
#[derive(Clone, Debug)]
pub struct CdrFilter {
    /// Recorded in `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// Only these lines (`None`: every line, and records with no line).
    pub lines: Option<Vec<LineId>>,
    /// Only records naming this profile.
    pub profile: Option<ProfileId>,
    pub limit: i64,
}

impl Default for CdrFilter {
    fn default() -> Self {
        CdrFilter {
            from: Timestamp(0),
            to: Timestamp(i64::MAX),
            lines: None,
            profile: None,
            limit: 1000,
        }
    }
}

/// Filters for reading the audit log; every one optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only entries older than this sequence number (paging backwards).
    pub before_seq: Option<i64>,
    /// Only entries about this profile: the profile itself, objects it owns
    /// (`<id>/...`), and what its clients did (actor `profile:<id>`).
    pub about_profile: Option<i64>,
    pub limit: i64,
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries that verified.
    pub verified: i64,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

/// What the observer of committed changes is told.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// A change committed, with its audit record. A change another node
    /// of the deployment made carries only what identifies it (event
    /// type, object, the names of the changed fields): no personal value
    /// crosses between nodes.
    Committed(&'a AuditRecord),
    /// Changes of other nodes may have gone unheard (the connection that
    /// hears them was lost and is back): re-read everything.
    Missed,
    /// A note another node sent with [`AuditStore::signal`], opened.
    Signal { topic: &'a str, note: &'a [u8] },
}

/// Called after each committed change, so that in-memory views (caller-id
/// index, connected clients) follow the database, whichever node wrote it.
pub type ChangeObserver = std::sync::Arc<dyn Fn(Change<'_>) + Send + Sync>;

#[async_trait]
pub trait AuditStore {
    /// Registers the observer of committed changes (one; a second call
    /// replaces it).
    fn observe(&self, observer: ChangeObserver);
    /// Sends `notes` to the observers of the other nodes on this database
    /// (each as a [`Change::Signal`], in order, in one round trip),
    /// sealed under the deployment's key: the database sees only
    /// ciphertext. Nothing is kept; a node not listening at that moment
    /// never hears them. With one node (SQLite), nothing to do.
    async fn signal(&self, topic: &str, notes: &[&[u8]]) -> Result<()>;
    /// Appends an entry that goes with no data change (a login, a refusal).
    async fn append_audit(&self, record: AuditRecord) -> Result<i64>;
    /// Appends several such entries in one transaction (one disk sync for a
    /// burst, such as thousands of lines registering at once).
    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<()>;
    /// Retention: deletes the entries older than `cutoff` (the oldest ones,
    /// keeping the chain contiguous), anchors the chain at the first kept
    /// entry, and appends `audit` (a `retention.purged` entry naming the
    /// anchor) in the same transaction. Returns how many went.
    async fn purge_audit_before(&self, cutoff: Timestamp, audit: AuditRecord) -> Result<u64>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// Checks every entry's link and MAC, and that none after the last
    /// recorded head was removed.
    async fn verify_audit(&self) -> Result<AuditVerification>;
}

/// Whole-database operations for backups.
#[async_trait]
pub trait MaintenanceStore {
    /// Streams a consistent image of the whole database file into `sink`
    /// while the store keeps serving: one read transaction, read page by
    /// page, so writers carry on and the image never needs to fit in
    /// memory or touch the disk in clear.
    async fn image(&self, sink: &mut dyn ImageSink) -> Result<()>;
    /// The newest schema migration applied.
    async fn schema_version(&self) -> Result<i64>;
    /// The database's own consistency check: `ok` when sound.
    async fn integrity_check(&self) -> Result<String>;
    /// How many records of each kind exist (the privacy report).
    async fn counts(&self) -> Result<DataCounts>;
    /// Closes the store's connections (after the last use).
    async fn close(&self);
    /// Claims `job` for `node` if no other node ran it in the last
    /// `every_ms` before `now`: true means "run it now". With several
    /// nodes on one database, each period's run goes to one of them; the
    /// node that ran it last may run it again (it restarted). Bookkeeping,
    /// not a change of data: not audited.
    async fn claim_job(&self, job: &str, every_ms: i64, now: Timestamp, node: &str)
    -> Result<bool>;
    /// Line leases (one MLC per line across the nodes of a deployment):
    /// renews every lease `node` holds and, unless another node holds a
    /// live lease (it is the active node; this one stands by), takes the
    /// lines no node holds or whose holder let its lease expire (the epoch
    /// of a line grows at every takeover), each until `ttl_ms` from now on
    /// the database's clock, in one transaction, one node at a time.
    /// Returns the lines `node` holds now.
    /// Bookkeeping, not a change of data: not audited. (SQLite serves one
    /// node: it holds every line and nothing is kept.)
    async fn lease_lines(&self, node: &str, ttl_ms: i64) -> Result<Vec<LineLease>>;
    /// Gives up every lease `node` holds (it stops serving lines), so
    /// another node takes them at once.
    async fn release_lines(&self, node: &str) -> Result<()>;
    /// Every line's lease.
    async fn line_leases(&self) -> Result<Vec<LineLease>>;
    /// Whether other nodes may work on this database (PostgreSQL): the
    /// System Manager then shares with them what it holds in memory.
    fn is_shared(&self) -> bool;
    /// The next `n` numbers of the deployment's CTI event series (one for
    /// every node; only on a shared database).
    async fn cti_sequence(&self, n: i64) -> Result<Vec<i64>>;
    /// A number for a new Multi-Line Controller instance, unique among
    /// the deployment's running ones (1..8191, cycling), so call ids never
    /// clash between nodes. `None` with one node on SQLite: the process
    /// numbers its own.
    async fn mlc_instance(&self) -> Result<Option<u64>>;
    /// The portal's view state of an admin session (`session`, the hash
    /// of its token) under `slot`: a one-time message, a list's filter.
    /// Only on a shared database, where the session's next request may
    /// reach another node: sealed under the deployment's key (bound to the
    /// session and the slot), never in a backup, gone with the session.
    /// `None` removes it.
    async fn put_view_state(
        &self,
        session: [u8; 32],
        slot: &str,
        value: Option<&str>,
    ) -> Result<()>;
    /// The view state under `slot`, removed if `take`.
    async fn view_state(&self, session: [u8; 32], slot: &str, take: bool)
    -> Result<Option<String>>;
    /// Removes every view state of `session`.
    async fn forget_view_state(&self, session: [u8; 32]) -> Result<()>;
    /// Which of `names` (profile names found in this node's CDR files)
    /// belong to profiles erased through any node: the deployment's
    /// ledger keeps a mark of each erased name, never the name. (One node
    /// on SQLite removes a name from its files at the erasure itself:
    /// none.)
    async fn erased_among(&self, names: &[String]) -> Result<Vec<String>>;
}

/// Who serves a line until when (see [`MaintenanceStore::lease_lines`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineLease {
    pub line: LineId,
    pub holder: String,
    /// Grows by one at every takeover by another node.
    pub epoch: i64,
    /// Milliseconds left, on the database's clock (negative: expired).
    pub remaining_ms: i64,
}

impl LineLease {
    /// From a row (line, holder, epoch, expiry) read at `now`.
    pub fn of_row((line, holder, epoch, expires_at): (i64, String, i64, i64), now: i64) -> Self {
        LineLease {
            line: LineId(line),
            holder,
            epoch,
            remaining_ms: expires_at - now,
        }
    }
}

/// Receives a database image from [`MaintenanceStore::image`].
pub trait ImageSink: Send {
    /// Called once, before any bytes: the image's length.
    fn begin(&mut self, len: u64) -> Result<()>;
    /// The image's next bytes, in order.
    fn bytes(&mut self, data: &[u8]) -> Result<()>;
}

/// Record counts per data category of SPEC §2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataCounts {
    pub admins: i64,
    pub profiles: i64,
    pub profiles_collecting_call_memory: i64,
    pub local_contacts: i64,
    pub speed_dials: i64,
    pub global_contacts: i64,
    pub lines: i64,
    pub line_assignments: i64,
    pub consents: i64,
    pub call_memory_entries: i64,
    pub cdrs: i64,
    /// Lines of the record of forwarding to voice recorders.
    pub recording_log: i64,
    pub audit_entries: i64,
    /// Oldest call-memory entry and CDR (Unix ms), for retention.
    pub oldest_call_memory: Option<i64>,
    pub oldest_cdr: Option<i64>,
}
