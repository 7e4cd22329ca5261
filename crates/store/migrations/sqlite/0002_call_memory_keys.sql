-- Call memory sealed per profile: the X25519 public key entries are sealed
-- to, and the private key wrapped under the profile password and under the
-- call-memory password (see openturret_store::sealing).
ALTER TABLE profiles ADD COLUMN cm_public_key BLOB;
ALTER TABLE profiles ADD COLUMN cm_wrap_profile BLOB;
ALTER TABLE profiles ADD COLUMN cm_wrap_call_memory BLOB;
