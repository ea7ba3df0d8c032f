import { ApiError, type AuthStatus, keys, signInWithPassword } from "../api";
import { h } from "../dom";

/** The sign-in page: a person's account (email and password, or single sign-on), or API
 * keys, with which key does what. */
export function signInPage(status: Promise<AuthStatus | null> | null, problem?: string): HTMLElement {
  const error = h("p", { class: "error", role: "alert" }, problem || "");
  const sso = h("p", { class: "sso", hidden: true }, h("a", { class: "button", id: "sso-signin", href: "/v1/auth/sso/login" }, "Sign in with SSO"));
  void status?.then((known) => {
    sso.hidden = !known?.sso;
  });
  return h(
    "div",
    { class: "signin" },
    h("h1", null, "Sextant"),
    h("p", { class: "lede" }, "Where your product stands: outcomes, experiments and what customers say, live."),
    accountForm(error),
    sso,
    error,
    h("h2", { class: "signin-keys" }, "Or with API keys"),
    keyForm(error),
    keysHelp(),
  );
}

function accountForm(error: HTMLElement): HTMLElement {
  const email = h("input", { name: "email", type: "email", autocomplete: "username", id: "email", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", id: "password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  return h(
    "form",
    {
      class: "signin-form",
      id: "account-signin",
      onsubmit: (e: Event) => {
        e.preventDefault();
        submit.disabled = true;
        signInWithPassword(email.value.trim(), password.value)
          .then(() => {
            history.replaceState(null, "", "#/outcomes");
            location.reload();
          })
          .catch((failure: unknown) => {
            submit.disabled = false;
            const locked = failure instanceof ApiError && failure.status === 429;
            error.textContent = locked
              ? "Too many failed sign-ins: wait a while, then try again."
              : failure instanceof ApiError && failure.status === 401
                ? "That email and password do not match an account."
                : String((failure as Error).message || failure);
          });
      },
    },
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    submit,
  );
}

function keyForm(error: HTMLElement): HTMLElement {
  const read = h("input", { name: "read", type: "password", autocomplete: "off", placeholder: "sx_read_…", id: "read-key" });
  const admin = h("input", { name: "admin", type: "password", autocomplete: "off", placeholder: "sx_admin_… (optional)", id: "admin-key" });
  return h(
    "form",
    {
      class: "signin-form",
      id: "key-signin",
      onsubmit: (e: Event) => {
        e.preventDefault();
        if (!read.value && !admin.value) {
          error.textContent = "Enter a read key (or an admin key for the admin view).";
          return;
        }
        keys.set(read.value.trim(), admin.value.trim());
        // replaceState, not location.hash: a hashchange would start a route (and its key
        // check) racing the reload, and a refused key cleared by it would lose the message.
        history.replaceState(null, "", read.value ? "#/outcomes" : "#/admin");
        location.reload();
      },
    },
    h("label", { for: "read-key" }, "Read key"),
    read,
    h("p", { class: "hint" }, "Opens one project's workspace: outcomes, metrics, funnels, retention, experiments, alerts, web analytics and feedback. It can read, never change anything."),
    h("label", { for: "admin-key" }, "Admin key"),
    admin,
    h("p", { class: "hint" }, "Optional. Adds the admin view (projects, keys, documents) and lets you acknowledge and mute alerts. Keep it private."),
    h("button", { type: "submit", class: "primary" }, "Sign in with keys"),
  );
}

function keysHelp(): HTMLElement {
  return h(
    "section",
    { class: "keys-help" },
    h("h2", null, "Which key?"),
    h(
      "ul",
      null,
      h("li", null, h("strong", null, "Write keys"), " (sx_write_…) are public: apps and pages send events with them. They cannot sign in here."),
      h("li", null, h("strong", null, "Read keys"), " (sx_read_…) are private and scoped to one project: use one to open its workspace."),
      h("li", null, h("strong", null, "The admin key"), " (sx_admin_…) changes configuration for every project."),
      h("li", null, "Running the demo (", h("code", null, "make run"), ")? Its keys are printed in the terminal: read ", h("code", null, "sx_read_demo_00000000000000000"), ", admin ", h("code", null, "sx_admin_demo_0000000000000000"), "."),
    ),
    h("p", { class: "hint" }, "Keys stay in this browser's local storage and are sent only to this server. People sign in with their account; keys are for machines and for deployments without accounts."),
  );
}
