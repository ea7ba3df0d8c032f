import type { Properties } from "./types";

declare const __VERSION__: string;

export const LIBRARY = { name: "@sextant/browser", version: __VERSION__ };

/** What does not change while the page lives: read once at init, copied into every event. */
export function staticContext(win: Window): Properties {
  const nav = win.navigator || ({} as Navigator);
  const screen = win.screen || ({} as Screen);
  let timezone: string | undefined;
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    /* no Intl */
  }
  return {
    userAgent: nav.userAgent,
    locale: nav.language,
    screen: { width: screen.width, height: screen.height, density: win.devicePixelRatio },
    timezone,
    library: LIBRARY,
  };
}

export interface PageInfo {
  path: string;
  referrer: string;
  search: string;
  title: string;
  url: string;
}

/** The page as it is now; `referrer` is the previous page of a single-page app when there was one. */
export function pageInfo(win: Window, referrer: string): PageInfo {
  const loc = win.location;
  return {
    path: loc.pathname,
    referrer,
    search: loc.search,
    title: win.document.title,
    url: loc.href,
  };
}

const UTM: Record<string, string> = {
  utm_source: "source",
  utm_medium: "medium",
  utm_campaign: "name",
  utm_term: "term",
  utm_content: "content",
};

let lastSearch: string | undefined;
let lastCampaign: Properties | undefined;

/** Segment's `context.campaign` from the UTM parameters of `search`, or undefined without any. */
export function campaign(search: string): Properties | undefined {
  if (search === lastSearch) return lastCampaign;
  let found: Properties | undefined;
  for (const pair of search.replace(/^\?/, "").split("&")) {
    const eq = pair.indexOf("=");
    const key = UTM[eq < 0 ? pair : pair.slice(0, eq)];
    if (!key) continue;
    let value = eq < 0 ? "" : pair.slice(eq + 1).replace(/\+/g, " ");
    try {
      value = decodeURIComponent(value);
    } catch {
      /* keep it as sent */
    }
    (found || (found = {}))[key] = value;
  }
  lastSearch = search;
  lastCampaign = found;
  return found;
}
