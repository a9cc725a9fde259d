// After htmx swaps a region, move focus to its main heading area so keyboard and
// screen-reader users land on the new content.
document.addEventListener("htmx:after:swap", function (evt) {
  var main = document.getElementById("main");
  var target = evt.detail && evt.detail.ctx && evt.detail.ctx.target;
  if (main && target && target.contains(main)) {
    main.focus({ preventScroll: false });
  }
});
