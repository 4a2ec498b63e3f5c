#!/usr/bin/env node
// Sign one request with Microsoft's own ACS HMAC-SHA256 credential policy
// (@azure/communication-common) and print the headers it sets.  Nothing is
// sent: the pipeline's terminal `next` captures the request.
//
//   echo '{"method":"PUT","url":"http://localhost:8080/acs/users/8%3Aacs%3Ax/devices/d1",
//          "body":"{\"platform\":\"fcmv1\"}","key":"<base64 access key>"}' \
//     | node t/lib/acs-sign.mjs
//   {"headers":{"Host":"localhost:8080","x-ms-date":"...",
//               "x-ms-content-sha256":"...","Authorization":"HMAC-SHA256 ..."}}
//
// Input: method (default GET), url (absolute), body (string, default none),
// key (base64), headers (optional object sent along, e.g. Content-Type).
// The policy always uses the current time (new Date().toUTCString()); there
// is no way to fix the date, so callers read x-ms-date back from the output.
// Header names are printed with the case the policy gives them, which is the
// case Node sends on the wire.  Needs `npm ci --prefix t` first.

import { webcrypto } from "node:crypto";
import { AzureKeyCredential } from "@azure/core-auth";
import { createPipelineRequest, createHttpHeaders } from "@azure/core-rest-pipeline";
import { createCommunicationAuthPolicy } from "@azure/communication-common";

// Node.js 18 (Debian 12's nodejs) has Web Crypto as node:crypto's webcrypto
// but not yet as the global `crypto` whose randomUUID() the pipeline calls
// for each request (@typespec/ts-http-runtime): set it where it is missing.
// Node.js 20 and later have the global.
if (globalThis.crypto === undefined) {
    globalThis.crypto = webcrypto;
}

function fail(msg) {
    process.stderr.write(`acs-sign.mjs: ${msg}\n`);
    process.exit(2);
}

let input = "";
for await (const chunk of process.stdin) {
    input += chunk;
}

let req;
try {
    req = JSON.parse(input);
} catch (e) {
    fail(`input is not JSON: ${e.message}`);
}
if (typeof req.url !== "string" || typeof req.key !== "string") {
    fail('input needs "url" and "key"');
}
if ("date" in req) {
    fail('"date" is not supported: the official policy always signs with the current time');
}

const request = createPipelineRequest({
    url: req.url,
    method: req.method ?? "GET",
    headers: createHttpHeaders(req.headers ?? {}),
    body: req.body,
});

// createCommunicationAuthPolicy picks the access key policy
// (createCommunicationAccessKeyCredentialPolicy) for a KeyCredential.
const policy = createCommunicationAuthPolicy(new AzureKeyCredential(req.key));

let captured;
await policy.sendRequest(request, async (signed) => {
    captured = signed;
    return { request: signed, status: 204, headers: createHttpHeaders() };
});

process.stdout.write(JSON.stringify({
    headers: captured.headers.toJSON({ preserveCase: true }),
}) + "\n");
