// The page runs with JavaScript: show what is only true then (settings save as you go).
document.documentElement.classList.add("js");

// After htmx swaps a region, move focus to the new content's main area so keyboard
// and screen-reader users land on it (not on a link that no longer exists).
document.addEventListener("htmx:after:swap", function (evt) {
  var ctx = evt.detail && evt.detail.ctx;
  var target = ctx && ctx.target;
  if (typeof target === "string") {
    target = document.querySelector(target);
  }
  var main = document.getElementById("main");
  if (!main || !target || typeof target.contains !== "function") {
    return;
  }
  if (target === document.body || !target.isConnected || target.contains(main)) {
    main.focus({ preventScroll: false });
  }
});
