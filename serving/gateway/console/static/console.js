// The console's only script: a verdict form is sent once (a double click would post the
// same verdict twice; the gateway records a repeat as such, but the analyst should not).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.hasAttribute("data-once")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
});
