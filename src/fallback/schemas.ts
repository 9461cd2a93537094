/**
 * Wire schemas of the HTTPS and admin APIs (DESIGN "HTTPS API"), as JSON Schema via TypeBox: fastify
 * validates every body, query and param against them before a handler runs, and the same
 * definitions give the TypeScript types. Bounded lengths everywhere.
 */
import { Type, type Static } from '@sinclair/typebox';
import { LABEL_PATTERN } from '../common/names.js';
import { TOKEN_ID_PATTERN } from '../common/proof.js';

export const Label = Type.String({ pattern: LABEL_PATTERN, minLength: 1, maxLength: 63 });
export const OptionalLabel = Type.Union([Type.Literal(''), Label]);
export const KeyFingerprint = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' });
const B64url = (max: number) => Type.String({ pattern: '^[A-Za-z0-9_-]+$', minLength: 1, maxLength: max });

export const Proof = Type.Object(
  {
    id: Type.String({ pattern: TOKEN_ID_PATTERN }),
    ts: Type.Integer({ minimum: 0, maximum: 2 ** 40 }),
    hmac: B64url(64),
  },
  { additionalProperties: false },
);

export const JoinBody = Type.Object(
  {
    name: Label,
    role: Label,
    cluster: OptionalLabel,
    csr: Type.String({ minLength: 100, maxLength: 8192 }),
    proof: Type.Optional(Proof),
  },
  { additionalProperties: false },
);
export type JoinBody = Static<typeof JoinBody>;

export const NameParams = Type.Object({ name: Label }, { additionalProperties: false });

/**
 * Query strings arrive as strings and are validated as such: muster turns type coercion off, so a
 * body field never silently becomes another type (`false` as a name, `0` as "no limit").
 */
const DigitString = (pattern: string) => Type.String({ pattern });
const WAIT_0_60 = '^([0-9]|[1-5][0-9]|60)$';
const LIMIT_1_1000 = '^([1-9][0-9]{0,2}|1000)$';
const LIMIT_1_10000 = '^([1-9][0-9]{0,3}|10000)$';
const SEQ = '^[0-9]{1,15}$';

export const WaitQuery = Type.Object(
  {
    key: KeyFingerprint,
    /** Seconds, 0 to 60. */
    wait: Type.Optional(DigitString(WAIT_0_60)),
  },
  { additionalProperties: false },
);

export const SignedBody = Type.Object(
  {
    key: KeyFingerprint,
    serial: Type.String({ pattern: '^[0-9A-F]{1,64}$' }),
    ts: Type.Integer({ minimum: 0, maximum: 2 ** 40 }),
    sig: B64url(1400),
  },
  { additionalProperties: false },
);

export const LeaveBody = Type.Object(
  { name: Label, ...SignedBody.properties },
  { additionalProperties: false },
);

export const ErrorReply = Type.Object({ error: Type.String(), message: Type.String() }, { additionalProperties: true });

// ---- admin API ----

export const NodeStateSchema = Type.Union(
  ['heard', 'pending', 'accepted', 'issued', 'active', 'rejected', 'removed'].map((s) => Type.Literal(s)),
);

export const ListNodesQuery = Type.Object(
  {
    state: Type.Optional(NodeStateSchema),
    after: Type.Optional(Type.String({ maxLength: 63 })),
    limit: Type.Optional(DigitString(LIMIT_1_1000)),
  },
  { additionalProperties: false },
);

export const InstallModeBody = Type.Union([
  Type.Object(
    {
      on: Type.Literal(true),
      forMs: Type.Integer({ minimum: 1000, maximum: 365 * 86_400_000 }),
      max: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
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
    ttlMs: Type.Optional(Type.Union([Type.Null(), Type.Integer({ minimum: 1000, maximum: 10 * 365 * 86_400_000 })])),
    uses: Type.Optional(Type.Union([Type.Null(), Type.Integer({ minimum: 1, maximum: 10_000_000 })])),
    roles: Type.Optional(Type.Array(Label, { maxItems: 32 })),
    clusters: Type.Optional(Type.Array(Label, { maxItems: 32 })),
    description: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

export const TokenIdParams = Type.Object({ id: Type.String({ pattern: TOKEN_ID_PATTERN }) }, { additionalProperties: false });

export const OperatorBody = Type.Object({ operator: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false });

export const EventsQuery = Type.Object(
  {
    after: Type.Optional(DigitString(SEQ)),
    limit: Type.Optional(DigitString(LIMIT_1_10000)),
    follow: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
  },
  { additionalProperties: false },
);
