// Typesets the math that pymdownx.arithmatex (generic mode) leaves in the pages:
// <span class="arithmatex">\(...\)</span> inline and <div class="arithmatex">\[...\]</div> display.
// Only those elements are touched, so a "$" anywhere else in a page stays text.
// material's document$ fires on every page load, including its instant navigation.
function typesetMath(root) {
  for (const element of root.querySelectorAll(".arithmatex")) {
    const source = element.textContent.trim();
    const display = source.startsWith("\\[");
    katex.render(source.slice(2, -2), element, {
      displayMode: display,
      throwOnError: false,
    });
  }
}

if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => typesetMath(body));
} else {
  document.addEventListener("DOMContentLoaded", () => typesetMath(document.body));
}
