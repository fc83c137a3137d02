// The API's browsable page (/api/v1/docs): Swagger UI, served by us, on our own document.
// A file of its own, not inline: the Content-Security-Policy allows scripts from 'self' only.
(function () {
  "use strict";
  var root = document.getElementById("api-docs");
  if (!root || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    // No calls home: the validator badge would send our document to another site.
    validatorUrl: null,
  });
})();
