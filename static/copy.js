// Copy buttons: <button type="button" data-copy="ID" hidden> copies the value (or text) of the
// element with that id. Buttons start hidden, so without this script none is shown.
for (const button of document.querySelectorAll('button[data-copy]')) button.hidden = false;

document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = 'value' in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    source.select?.();
    document.execCommand('copy');
  }
  const label = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => (button.textContent = label), 2000);
});
