/**
 * Wire schemas of the registrar's admin API (the operator CLI's only server), as JSON Schema
 * (TypeBox's builders without TypeBox at run time: fallback/json-schema.ts; validators generated at
 * build time). The limits are the CLI's too (common/limits.ts): the CLI refuses in the operator's
 * words what this API would refuse.
 */
import type { Static } from '@sinclair/typebox';
import { Type } from '../fallback/json-schema.js';
import {
  EVENTS_PAGE_MAX,
  INSTALL_MODE_FOR_MAX_MS,
  INSTALL_MODE_FOR_MIN_MS,
  INSTALL_MODE_MAX_MAX,
  INSTALL_MODE_MAX_MIN,
  NODES_PAGE_MAX,
  OPERATOR_NAME_MAX,
  TOKEN_DESCRIPTION_MAX,
  TOKEN_SCOPE_MAX,
  TOKEN_TTL_MAX_MS,
  TOKEN_TTL_MIN_MS,
  TOKEN_USES_MAX,
  TOKEN_USES_MIN,
} from '../common/limits.js';
import { TOKEN_ID_PATTERN } from '../common/proof.js';
import { NODE_STATES } from '../store/types.js';
import { DigitString, Label } from '../fallback/schemas.js';

export { NameParams } from '../fallback/schemas.js';

/**
 * A decimal string from 1 to max, max a power of ten (query strings arrive as strings; muster turns
 * coercion off).
 */
const upTo = (max: number): string => {
  const d = String(max).length;
  return `^(?:[1-9][0-9]{0,${d - 2}}|${max})$`;
};
const SEQ = '^[0-9]{1,15}$';

export const NodeStateSchema = Type.Union(NODE_STATES.map((s) => Type.Literal(s)));

export const ListNodesQuery = Type.Object(
  {
    state: Type.Optional(NodeStateSchema),
    after: Type.Optional(Type.String({ maxLength: 63 })),
    limit: Type.Optional(DigitString(upTo(NODES_PAGE_MAX))),
    /** Only nodes not seen for this many seconds (1 to 10^10). */
    stale: Type.Optional(DigitString('^[1-9][0-9]{0,9}$')),
    /** Only nodes in this group (DESIGN "Groups"). */
    group: Type.Optional(Label),
  },
  { additionalProperties: false },
);

export const InstallModeBody = Type.Union([
  Type.Object(
    {
      on: Type.Literal(true),
      forMs: Type.Integer({ minimum: INSTALL_MODE_FOR_MIN_MS, maximum: INSTALL_MODE_FOR_MAX_MS }),
      max: Type.Optional(Type.Integer({ minimum: INSTALL_MODE_MAX_MIN, maximum: INSTALL_MODE_MAX_MAX })),
      role: Type.Optional(Label),
      cluster: Type.Optional(Label),
      remote: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  Type.Object({ on: Type.Literal(false) }, { additionalProperties: false }),
]);
export type InstallModeBody = Static<typeof InstallModeBody>;

export const CreateTokenBody = Type.Object(
  {
    ttlMs: Type.Optional(
      Type.Union([Type.Null(), Type.Integer({ minimum: TOKEN_TTL_MIN_MS, maximum: TOKEN_TTL_MAX_MS })]),
    ),
    uses: Type.Optional(
      Type.Union([Type.Null(), Type.Integer({ minimum: TOKEN_USES_MIN, maximum: TOKEN_USES_MAX })]),
    ),
    roles: Type.Optional(Type.Array(Label, { maxItems: TOKEN_SCOPE_MAX })),
    clusters: Type.Optional(Type.Array(Label, { maxItems: TOKEN_SCOPE_MAX })),
    description: Type.Optional(Type.String({ maxLength: TOKEN_DESCRIPTION_MAX })),
  },
  { additionalProperties: false },
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

export const TokenIdParams = Type.Object(
  { id: Type.String({ pattern: TOKEN_ID_PATTERN }) },
  { additionalProperties: false },
);

export const OperatorBody = Type.Object(
  { operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })) },
  { additionalProperties: false },
);

export const EventsQuery = Type.Object(
  {
    after: Type.Optional(DigitString(SEQ)),
    limit: Type.Optional(DigitString(upTo(EVENTS_PAGE_MAX))),
    follow: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
    /** Only events of these types: one, or a comma list (`refused,token`); each checked by the route. */
    type: Type.Optional(Type.String({ pattern: '^[a-z-]+(,[a-z-]+)*$', maxLength: 256 })),
  },
  { additionalProperties: false },
);

/** A key fingerprint: base64url SHA-256 of the SPKI. */
const Fingerprint = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' });

/** `nodes preapprove` and `nodes rebuild` (issue 9, item 3). */
export const PreapproveBody = Type.Object(
  {
    operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })),
    key: Type.Optional(Fingerprint),
    role: Type.Optional(Label),
    /** null: never expires. */
    ttlMs: Type.Optional(
      Type.Union([Type.Null(), Type.Integer({ minimum: TOKEN_TTL_MIN_MS, maximum: TOKEN_TTL_MAX_MS })]),
    ),
  },
  { additionalProperties: false },
);

/** `nodes ban` and `nodes unban`: a name or a key. */
export const BanBody = Type.Union([
  Type.Object(
    {
      operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })),
      name: Label,
      reason: Type.Optional(Type.String({ maxLength: TOKEN_DESCRIPTION_MAX })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })),
      key: Fingerprint,
      reason: Type.Optional(Type.String({ maxLength: TOKEN_DESCRIPTION_MAX })),
    },
    { additionalProperties: false },
  ),
]);

/** `nodes approve --force --key FP`: the key that is to hold the name. */
export const ForceApproveBody = Type.Object(
  { operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })), key: Fingerprint },
  { additionalProperties: false },
);

/** `nodes group NAME GROUP [--force]` (DESIGN "Groups"): a DNS label, like names and roles. */
export const GroupBody = Type.Object(
  {
    operator: Type.Optional(Type.String({ maxLength: OPERATOR_NAME_MAX })),
    group: Label,
    /** Move a node that is in another group (without it: 409 group_conflict). */
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
