// sd-webui-dnp: "Suggest and generate" presses the tab's Generate once the suggestion is in the box.
function dnpGenerateAfterSuggest(tab) {
    tab = tab || "txt2img";
    const app = gradioApp();
    const note = app.querySelector(`#dnp_${tab}_note`);
    if (note && note.querySelector(".dnp-error")) return [];  // the suggestion failed: don't generate
    const generate = app.getElementById(`${tab}_generate`);
    if (generate) generate.click();
    return [];
}
