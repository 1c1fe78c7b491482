/**
 * Errors of the governance service (governance-service.ts) that the pure core does not
 * know: lookups, the wrong-code limit, enrolment. The core's own refusals travel as
 * `RotationError` (errors.ts). Messages name officers and proposals, never codes or
 * secrets.
 */
import { SignetError } from '../errors/signet-error.js';

export type GovernanceErrorCode =
  | 'PROPOSAL_NOT_FOUND'
  /** Too many wrong TOTP codes from this officer recently: approvals are refused until the window ends. */
  | 'TOTP_LOCKED'
  /** The officer already has a TOTP secret; a new one needs a new officer (add-officer). */
  | 'OFFICER_ALREADY_ENROLLED'
  /** The service runs without an officer CA (`server.tls.officerCaFile`). */
  | 'OFFICER_ROUTES_DISABLED'
  /** Proposals never act on the transparency log's own key. */
  | 'LOG_KEY_RESERVED';

export class GovernanceError extends SignetError<GovernanceErrorCode> {}
