// Fuel-consumption client: converts the form to the model's units, calls the V1 API on the same
// origin (nginx proxies /v1/), shows the estimate or the API's field errors next to each field.
"use strict";

const FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"];
// Metric input -> the model's US units.
const TO_US = {
  displacement: 61.0237441, // litres -> cubic inches
  horsepower: 1.34102209, // kW -> hp
  weight: 2.20462262, // kg -> lb
};
const PREDICT_URL = "/v1/models/mpg:predict";

function units() {
  return document.querySelector('input[name="units"]:checked').value;
}

function setUnits(next, previous) {
  for (const [name, factor] of Object.entries(TO_US)) {
    const input = document.getElementById(name);
    const value = parseFloat(input.value);
    if (!Number.isNaN(value) && next !== previous) {
      const converted = next === "us" ? value * factor : value / factor;
      input.value = String(Math.round(converted * 100) / 100);
    }
    const label = input.parentElement.querySelector(".unit");
    label.textContent = label.dataset[next === "us" ? "us" : "metric"];
  }
}

function clearErrors() {
  for (const name of [...FEATURES, "form"]) {
    document.getElementById(`${name}-error`).textContent = "";
    const input = document.getElementById(name);
    if (input) input.removeAttribute("aria-invalid");
  }
}

function showErrors(message) {
  // The API names each problem as "instances[0].<field>: <what is wrong>", separated by "; ".
  let placed = false;
  for (const part of message.split("; ")) {
    const match = part.match(/^instances\[\d+\]\.(\w+): (.*)$/);
    if (match && FEATURES.includes(match[1])) {
      document.getElementById(`${match[1]}-error`).textContent = match[2];
      document.getElementById(match[1]).setAttribute("aria-invalid", "true");
      placed = true;
    }
  }
  if (!placed) document.getElementById("form-error").textContent = message;
}

function instance() {
  const car = {};
  for (const name of FEATURES) {
    const raw = document.getElementById(name).value.trim();
    const value = raw === "" ? NaN : Number(raw);
    car[name] = units() === "metric" && TO_US[name] ? value * TO_US[name] : value;
  }
  return car;
}

function showResult(prediction, modelId) {
  document.getElementById("l100km").textContent = prediction.l_per_100km.toFixed(1);
  document.getElementById("mpg").textContent = prediction.mpg.toFixed(1);
  document.getElementById("model-id").textContent = modelId;
  const note = document.getElementById("extrapolation");
  const outside = prediction.outside_training_range;
  note.hidden = outside.length === 0;
  note.textContent = outside.length ? `Outside the range the model was trained on: ${outside.join(", ")}.` : "";
  document.getElementById("result").hidden = false;
}

async function estimate(event) {
  event.preventDefault();
  clearErrors();
  const car = instance();
  const missing = FEATURES.filter((name) => !Number.isFinite(car[name]));
  if (missing.length) {
    for (const name of missing) {
      document.getElementById(`${name}-error`).textContent = "enter a number";
      document.getElementById(name).setAttribute("aria-invalid", "true");
    }
    return;
  }
  try {
    const response = await fetch(PREDICT_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: [car] }),
    });
    const body = await response.json();
    if (!response.ok) {
      showErrors(body.error || `request failed (${response.status})`);
      document.getElementById("result").hidden = true;
      return;
    }
    showResult(body.predictions[0], body.model_id);
  } catch (error) {
    document.getElementById("form-error").textContent = `The service cannot be reached: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  let current = units();
  for (const radio of document.querySelectorAll('input[name="units"]')) {
    radio.addEventListener("change", () => {
      setUnits(units(), current);
      current = units();
    });
  }
  document.getElementById("car").addEventListener("submit", estimate);
});
