// A real OpenID provider for the single sign-on tests: panva's oidc-provider, configured
// with one client (the gateway) and the people named in OIDC_PEOPLE. Its sign-in page asks
// only for an email (no password): the tests are about the gateway's side of the flow.
//
//   OIDC_PEOPLE='{"ada@corp.example": {"name": "Ada", "email_verified": true}}'
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI   the gateway's registration
//   OIDC_PORT (0: any free port)
//
// Prints "ready <issuer>" once it listens.
import { generateKeyPairSync, randomUUID } from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

const people = JSON.parse(process.env.OIDC_PEOPLE || "{}");
const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.OIDC_PORT || 0), "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const signingKey = {
  ...generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
  kid: randomUUID(),
  use: "sig",
  alg: "RS256",
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  scopes: ["openid", "email", "profile"],
  cookies: { keys: [randomUUID()] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const person = people[id];
    if (!person) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, email: id, email_verified: person.email_verified, name: person.name }),
    };
  },
});

function page(res, uid, message = "") {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><title>Test provider</title><link rel="icon" href="data:,"><h1>Test provider</h1><p>${message}</p>
<form method="post" action="/interaction/${uid}"><label>Email <input name="email" id="email"></label>
<button type="submit">Continue</button></form>`);
}

async function readForm(req) {
  let body = "";
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") return page(res, details.uid);
  const email = (await readForm(req)).get("email") || "";
  if (!people[email]) return page(res, details.uid, `No person ${email} here.`);
  const grant = new provider.Grant({ accountId: email, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: email }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const handle = provider.callback();
server.on("request", (req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((error) => {
      res.writeHead(400, { "Content-Type": "text/plain" });
      res.end(String(error));
    });
  } else {
    handle(req, res);
  }
});
console.log(`ready ${issuer}`);
