-- Argo CD health check for telco.intent.dev/v1alpha1 Invoice (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready: a draft (TMF678 new) that follows its period, and every issued state
-- (validated, sent, partiallyPaid, settled); Degraded when Stalled, Degraded or on hold; else Progressing.
-- Install: resource.customizations.health.telco.intent.dev_Invoice in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local ISSUED = { validated = true, sent = true, partiallyPaid = true, settled = true }

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  local state = st.state
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  if state == "onHold" then
    return result("Degraded", "on hold: " .. says(st, "Ready", "the bill cannot be issued"))
  end
  if state ~= nil and ISSUED[state] then
    local message = state
    if type(st.billNo) == "string" and st.billNo ~= "" then
      message = message .. " (bill " .. st.billNo .. ")"
    end
    if type(st.amountDue) == "table" and st.amountDue.value ~= nil and st.amountDue.unit ~= nil then
      message = message .. ", amount due " .. tostring(st.amountDue.value) .. " " .. tostring(st.amountDue.unit)
    end
    if st.overdue == true then
      message = message .. ", overdue"
    end
    return result("Healthy", message)
  end
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", "draft"))
  end
  if state == nil then
    return result("Progressing", "waiting for the controller to set status.state")
  end
  return result("Progressing", tostring(state) .. ": " .. says(st, "Ready", "the bill is being computed"))
end

return run(obj)
