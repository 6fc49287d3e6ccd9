// Fuel-consumption client: converts the form to the model's units, calls the V1 API on the same
// origin (nginx proxies it), shows the estimate or every field error next to its field, in the
// units the form is in. The page's nginx gives each estimate an id (answered as X-Request-Id); the
// "actual consumption" form sends feedback for that id to the monitor (POST /feedback, same origin).
"use strict";

const FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"];
// Metric input -> the model's US units.
const TO_US = {
  displacement: 61.0237441, // litres -> cubic inches
  horsepower: 1.34102209, // kW -> hp
  weight: 2.20462262, // kg -> lb
};
// What a person calls each feature (the API's names are for programs).
const LABELS = {
  cylinders: "cylinders",
  displacement: "displacement",
  horsepower: "power",
  weight: "weight",
  acceleration: "acceleration",
  model_year: "model year",
  origin: "origin",
};
const PREDICT_URL = "/v1/models/mpg:predict";
const FEEDBACK_URL = "/feedback";
let lastRequestId = null;

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
  }
  for (const element of document.querySelectorAll("[data-metric][data-us]")) {
    element.textContent = element.dataset[next === "us" ? "us" : "metric"];
  }
}

function hideResult() {
  document.getElementById("result").hidden = true;
  document.getElementById("feedback").hidden = true;
  lastRequestId = null;
}

function clearErrors() {
  for (const name of [...FEATURES, "form"]) {
    document.getElementById(`${name}-error`).textContent = "";
    const input = document.getElementById(name);
    if (input) input.removeAttribute("aria-invalid");
  }
}

function markField(name, text) {
  document.getElementById(`${name}-error`).textContent = text;
  document.getElementById(name).setAttribute("aria-invalid", "true");
}

// The API states bounds in the model's units ("must be within [100, 20000] lb"); in metric mode,
// say them in the form's units ("must be within [45, 9072] kg").
function inFormUnits(name, message) {
  if (units() !== "metric" || !TO_US[name]) return message;
  const unit = document.querySelector(`label[for=${name}] ~ .unit`).dataset.metric;
  return message.replace(/\[([-\d.e+]+), ([-\d.e+]+)\] [^;]*$/, (_, low, high) => {
    const convert = (text) => String(Math.round((parseFloat(text) / TO_US[name]) * 100) / 100);
    return `[${convert(low)}, ${convert(high)}] ${unit}`;
  });
}

function showErrors(message, empty = []) {
  // The API names each problem as "instances[0].<field>: <what is wrong>", separated by "; ".
  // An empty field keeps its own "enter a number".
  let placed = false;
  for (const part of message.split("; ")) {
    const match = part.match(/^instances\[\d+\]\.(\w+): (.*)$/);
    if (match && FEATURES.includes(match[1])) {
      if (!empty.includes(match[1])) markField(match[1], inFormUnits(match[1], match[2]));
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

function showResult(prediction, modelId, requestId) {
  lastRequestId = requestId;
  document.getElementById("feedback").hidden = !requestId;
  document.getElementById("feedback-status").textContent = "";
  document.getElementById("actual-error").textContent = "";
  document.getElementById("actual").value = "";
  document.getElementById("l100km").textContent = prediction.l_per_100km.toFixed(1);
  document.getElementById("mpg").textContent = prediction.mpg.toFixed(1);
  document.getElementById("model-id").textContent = modelId;
  const note = document.getElementById("extrapolation");
  const outside = prediction.outside_training_range.map((name) => LABELS[name] || name);
  note.hidden = outside.length === 0;
  note.textContent = outside.length
    ? `Outside the range of the cars the model learned from: ${outside.join(", ")}. Treat the estimate with care.`
    : "";
  document.getElementById("result").hidden = false;
}

// The body of an answer, or null when it is not JSON (an HTML error page from a proxy, say).
async function jsonOf(response) {
  const type = response.headers.get("content-type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function estimate(event) {
  event.preventDefault();
  clearErrors();
  const car = instance();
  const missing = FEATURES.filter((name) => !Number.isFinite(car[name]));
  if (missing.length) {
    hideResult(); // an estimate for other values must not stay on screen
    for (const name of missing) markField(name, "enter a number");
    // still ask the API (empty fields go as null, which it refuses): every other problem shows at once
  }
  let response;
  try {
    response = await fetch(PREDICT_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: [car] }),
    });
  } catch {
    hideResult();
    document.getElementById("form-error").textContent =
      "The estimate service cannot be reached. Check your connection and try again.";
    return;
  }
  const body = await jsonOf(response);
  if (!response.ok || body === null) {
    hideResult();
    if (body && body.error && response.status < 500) {
      showErrors(body.error, missing);
    } else {
      document.getElementById("form-error").textContent =
        `The estimate service is unavailable (HTTP ${response.status}). Try again in a moment.`;
    }
    return;
  }
  if (missing.length) return; // the API answered a car with empty fields: never shown as an estimate
  showResult(body.predictions[0], body.model_id, response.headers.get("X-Request-Id"));
}

// The monitor holds a feedback a few seconds for a prediction still on its way from the payload logger.
function postFeedback(body) {
  return fetch(FEEDBACK_URL, { method: "POST", headers: { "Content-Type": "application/json" }, body });
}

async function sendFeedback(event) {
  event.preventDefault();
  const status = document.getElementById("feedback-status");
  const error = document.getElementById("actual-error");
  status.textContent = "";
  error.textContent = "";
  const value = Number(document.getElementById("actual").value.trim() || NaN);
  if (!Number.isFinite(value) || value <= 0) {
    error.textContent = "enter the consumption you observed, a positive number";
    return;
  }
  const key = units() === "metric" ? "actual_l_per_100km" : "actual_mpg";
  const shown = units() === "metric" ? `${value} L/100 km` : `${value} mpg`;
  let response;
  try {
    response = await postFeedback(JSON.stringify({ request_id: lastRequestId, [key]: value }));
  } catch {
    error.textContent = "The feedback service cannot be reached. Try again later.";
    return;
  }
  const body = await jsonOf(response);
  if (!response.ok) {
    error.textContent =
      body && body.error && response.status < 500
        ? body.error.replace(/^actual_(mpg|l_per_100km): /, "")
        : `The feedback service is unavailable (HTTP ${response.status}). Try again later.`;
    return;
  }
  status.textContent = `Thank you: ${shown} recorded for this estimate.`;
}

document.addEventListener("DOMContentLoaded", () => {
  let current = units();
  setUnits(current, current);
  for (const radio of document.querySelectorAll('input[name="units"]')) {
    radio.addEventListener("change", () => {
      setUnits(units(), current);
      current = units();
    });
  }
  document.getElementById("car").addEventListener("submit", estimate);
  document.getElementById("feedback-form").addEventListener("submit", sendFeedback);
});
