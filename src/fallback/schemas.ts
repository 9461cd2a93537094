/**
 * Wire schemas of the HTTPS registration API (DESIGN "HTTPS API"), as JSON Schema (TypeBox's builders
 * without TypeBox at run time: json-schema.ts): fastify validates every body, query and param against
 * them before a handler runs, with validators generated at build time (validators.gen.ts), and the
 * same definitions give the TypeScript types. Bounded lengths everywhere.
 */
import type { Static } from '@sinclair/typebox';
import { Type } from './json-schema.js';
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
export const DigitString = (pattern: string) => Type.String({ pattern });
const WAIT_0_60 = '^([0-9]|[1-5][0-9]|60)$';

export const WaitQuery = Type.Object(
  {
    key: KeyFingerprint,
    /** Seconds, 0 to 60. */
    wait: Type.Optional(DigitString(WAIT_0_60)),
    /** Proof of possession of the key (DESIGN "HTTPS API"): unix seconds and the node's signature. */
    ts: DigitString('^[0-9]{1,12}$'),
    sig: B64url(1400),
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

/** POST /v1/renew: a leave-shaped signed body, and a CSR for the new key when the node rotates it. */
export const RenewBody = Type.Object(
  { name: Label, ...SignedBody.properties, newCsr: Type.Optional(JoinBody.properties.csr) },
  { additionalProperties: false },
);

export const ErrorReply = Type.Object(
  { error: Type.String(), message: Type.String() },
  { additionalProperties: true },
);

/** GET /v1/crl?format=der|pem (the Accept header chooses when the query does not). */
export const CrlQuery = Type.Object(
  { format: Type.Optional(Type.Union([Type.Literal('der'), Type.Literal('pem')])) },
  { additionalProperties: false },
);
