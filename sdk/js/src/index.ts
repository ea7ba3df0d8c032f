/**
 * @sextant/browser: product events from the browser to a Sextant collector.
 *
 * ```ts
 * import { init, track } from "@sextant/browser";
 * init("WRITE_KEY", { host: "https://collector.example.com" });
 * track("Order Completed", { revenue: 39.5 });
 * ```
 */
import { Sextant } from "./client";
import type { Properties } from "./types";

export { Sextant, SURVEY_EVENT } from "./client";
export { LIBRARY } from "./context";
export type { Env } from "./env";
export type {
  DeliveryError,
  EventType,
  ExperimentOptions,
  FailureReason,
  FeatureOptions,
  FieldProblem,
  InitOptions,
  Persistence,
  Properties,
  SextantEvent,
  Stats,
} from "./types";

/** The instance behind the package's functions. */
export const defaultClient = new Sextant();

export const init = (writeKey: string, options: import("./types").InitOptions): void =>
  defaultClient.init(writeKey, options);
export const track = (event: string, properties?: Properties): string => defaultClient.track(event, properties);
export const page = (name?: string, properties?: Properties): string => defaultClient.page(name, properties);
export const surveyResponse = (survey: string, score: number, comment?: string, properties?: Properties): string =>
  defaultClient.surveyResponse(survey, score, comment, properties);
export const identify = (userId: string | number | null, traits?: Properties): string =>
  defaultClient.identify(userId, traits);
export const alias = (userId: string | number, previousId?: string | number): string =>
  defaultClient.alias(userId, previousId);
export const group = (groupId: string | number, traits?: Properties): string => defaultClient.group(groupId, traits);
export const reset = (): void => defaultClient.reset();
export const flush = (): Promise<void> => defaultClient.flush();
export const stats = (): import("./types").Stats => defaultClient.stats();
export const anonymousId = (): string => defaultClient.anonymousId();
export const userId = (): string | null => defaultClient.userId();
