// Passkeys (WebAuthn): "Add a passkey" on Your account > Security, "Sign in with a
// passkey" and passkey autofill on the sign-in page. The server sends the options as JSON
// (base64url for binary fields) and checks every answer; this file only converts between
// JSON and the browser's ArrayBuffers. Without JavaScript the pages say passkeys need it.
(function () {
  "use strict";

  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var headers = document.body.getAttribute("hx-headers:inherited") || "{}";
    try { return JSON.parse(headers)["x-csrftoken"] || ""; } catch (e) { return ""; }
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? "{}" : JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || "Something went wrong. Please try again."); }
        return data;
      });
    });
  }

  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }

  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }

  function registrationJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: toText(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: toText(r.clientDataJSON),
        attestationObject: toText(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : [],
      },
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      authenticatorAttachment: cred.authenticatorAttachment || null,
    };
  }

  function authenticationJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: toText(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: toText(r.clientDataJSON),
        authenticatorData: toText(r.authenticatorData),
        signature: toText(r.signature),
        userHandle: toText(r.userHandle),
      },
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      authenticatorAttachment: cred.authenticatorAttachment || null,
    };
  }

  function showError(scope, message) {
    var box = (scope || document).querySelector("[data-passkey-error]");
    // role="alert" only once there is something to say (an empty alert is still an alert).
    if (box) { box.setAttribute("role", "alert"); box.textContent = message; box.hidden = false; }
  }

  function nextPath() {
    var field = document.querySelector('form[action="/sign-in"] input[name="next"]');
    return field ? field.value : "/invoices";
  }

  var pending = null; // the autofill request, aborted before an explicit one

  function signIn(publicKey, mediation) {
    if (pending) { pending.abort(); }
    pending = new AbortController();
    var request = { publicKey: requestOptions(publicKey), signal: pending.signal };
    if (mediation) { request.mediation = mediation; }
    return navigator.credentials.get(request).then(function (cred) {
      return post("/sign-in/passkey?next=" + encodeURIComponent(nextPath()), authenticationJSON(cred));
    }).then(function (data) { window.location.assign(data.redirect); });
  }

  function reveal() {
    var usable = !!window.PublicKeyCredential;
    document.querySelectorAll("[data-needs-passkeys]").forEach(function (el) { el.hidden = !usable; });
    document.querySelectorAll("[data-no-passkeys]").forEach(function (el) { el.hidden = usable; });
    document.querySelectorAll("[data-without-js]").forEach(function (el) { el.hidden = true; });
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-passkey-add], [data-passkey-sign-in]");
    if (!button) { return; }
    evt.preventDefault();
    var scope = button.closest("section, form");
    if (button.hasAttribute("data-passkey-add")) {
      post("/account/passkeys/options").then(function (options) {
        return navigator.credentials.create({ publicKey: creationOptions(options) });
      }).then(function (cred) {
        return post("/account/passkeys", registrationJSON(cred));
      }).then(function (data) { window.location.assign(data.redirect); })
        .catch(function (err) {
          showError(scope, err.name === "NotAllowedError" ? "No passkey was added." : err.message);
        });
    } else {
      post("/sign-in/passkey/options").then(function (options) {
        return signIn(options);
      }).catch(function (err) {
        showError(scope, err.name === "NotAllowedError" ? "No passkey was used." : err.message);
      });
    }
  });

  function autofill() {
    var field = document.querySelector('input[autocomplete~="webauthn"]');
    if (!field || !window.PublicKeyCredential || !PublicKeyCredential.isConditionalMediationAvailable) { return; }
    // Quietly: a person who never picks a passkey from the suggestions sees nothing of it.
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) { return; }
      return post("/sign-in/passkey/options").then(function (options) {
        return signIn(options, "conditional").catch(function (err) {
          if (err.name !== "AbortError" && err.name !== "NotAllowedError") { showError(document, err.message); }
        });
      });
    }).catch(function () {});
  }

  document.addEventListener("htmx:after:swap", reveal);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { reveal(); autofill(); });
  } else {
    reveal();
    autofill();
  }
})();
