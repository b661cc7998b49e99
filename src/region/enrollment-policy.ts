/**
 * `--enrollment-policy`: what happens when an id the region has never seen enrols.
 * - `auto`: it is enrolled at once (with the enrolment token, when the region has one).
 * - `approve`: it waits, answered 202 `enrollment-pending`, until an operator runs
 *   `cascade devices approve ID` (Mender's "accept"); the agent asks again with backoff.
 * Ids already enrolled are never held back by the policy: they re-enrol under the key rules.
 */
export type EnrollmentPolicy = 'auto' | 'approve';

export const ENROLLMENT_POLICIES: readonly EnrollmentPolicy[] = ['auto', 'approve'];

/** How long a pending device is told to wait before it asks again. */
export const PENDING_RETRY_SECONDS = 30;
