// sd-webui-dnp: "Suggest and generate" presses txt2img's Generate once the suggestion is in the box.
function dnpGenerateAfterSuggest() {
    const app = gradioApp();
    const note = app.querySelector("#dnp_txt2img_note");
    if (note && note.querySelector(".dnp-error")) return [];  // the suggestion failed: don't generate
    const generate = app.getElementById("txt2img_generate");
    if (generate) generate.click();
    return [];
}
