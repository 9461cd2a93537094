/**
 * Limits shared by the admin API (its request schemas) and the operator CLI (its flag parsers), so that
 * both refuse the same values and the CLI can say so in the operator's words before sending anything
 * (issue 14: "Validate at the CLI with the same parsers as the API"). Durations are milliseconds.
 */

const SECOND_MS = 1000;
const DAY_MS = 86_400_000;

/** `install-mode on --for`: from one second to one year. */
export const INSTALL_MODE_FOR_MIN_MS = SECOND_MS;
export const INSTALL_MODE_FOR_MAX_MS = 365 * DAY_MS;

/** `install-mode on --max`: nodes install mode may admit before it switches itself off. */
export const INSTALL_MODE_MAX_MIN = 1;
export const INSTALL_MODE_MAX_MAX = 1_000_000;

/** `tokens create --ttl`: from one second to ten years (or never: no expiry). */
export const TOKEN_TTL_MIN_MS = SECOND_MS;
export const TOKEN_TTL_MAX_MS = 10 * 365 * DAY_MS;
/** A token's lifetime when none is given. */
export const TOKEN_TTL_DEFAULT_MS = DAY_MS;

/** `tokens create --uses`: how many nodes one token may admit (absent: unlimited). */
export const TOKEN_USES_MIN = 1;
export const TOKEN_USES_MAX = 10_000_000;

/** `tokens create --description`: characters. */
export const TOKEN_DESCRIPTION_MAX = 200;

/** `tokens create --role/--cluster`: entries in a token's scope. */
export const TOKEN_SCOPE_MAX = 32;

/** The operator's name sent with approve/reject/remove (for the event log). */
export const OPERATOR_NAME_MAX = 64;

/** Page sizes of `GET /v1/admin/nodes?limit=` and `GET /v1/admin/events?limit=`. */
export const NODES_PAGE_MAX = 1000;
export const EVENTS_PAGE_MAX = 10_000;
