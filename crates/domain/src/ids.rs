//! Newtype identifiers for every stored object (STYLE habit 4).

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// An administrator account.
    AdminId
);
id_type!(
    /// A trader profile.
    ProfileId
);
id_type!(
    /// A local contact, owned by one profile.
    LocalContactId
);
id_type!(
    /// A speed dial key, owned by one profile.
    SpeedDialId
);
id_type!(
    /// A global contact, visible to every client.
    GlobalContactId
);
id_type!(
    /// A line: one SIP account on the PBX.
    LineId
);
id_type!(
    /// A consent record.
    ConsentId
);
id_type!(
    /// A call memory entry.
    CallMemoryId
);
id_type!(
    /// A call data record.
    CdrId
);
id_type!(
    /// An API key of an external application (CTI, API, CDR output).
    ApiKeyId
);
id_type!(
    /// A Session Recording Server calls are forwarded to (SIPREC).
    RecorderId
);
