// Reads a JSON array of IAM requests on stdin, evaluates each with
// @cloud-copilot/iam-simulate (Strict mode) and prints a JSON array of
// decisions in the same order. Test-only; driven by the Go package iamsim.
//
// Request:  {name, principal, action, resource, resourceAccount,
//            identityPolicies: [{name, policy}], resourcePolicy, sessionPolicy,
//            permissionBoundaries: [{name, policy}], context,
//            unlistedKeys: [context keys the simulator's data does not know]}
// Decision: {name, decision: Allowed|ExplicitlyDenied|ImplicitlyDenied|Error,
//            ignoredContextKeys?, engine, error?}
//
// The validated engine silently drops context keys its service data does not
// list for the action (e.g. "<issuer host>:aud" of a custom OIDC provider).
// A dropped key the caller did not declare is an Error, so a typo cannot
// turn into a silent "denied"; declared ones are evaluated by the unvalidated
// engine with the full context, after the validated run accepted the policies.
// A declared key the validated engine throws on (its data files it under
// another service prefix) is handled the same way. The unvalidated engine
// ignores session policies, so a request with one never falls back to it.
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'
import { createValidatedPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy'

async function readStdin() {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}

const opts = { simulationMode: 'Strict' }

async function evaluate(r) {
  const simulation = {
    request: {
      principal: r.principal,
      action: r.action,
      resource: { resource: r.resource, accountId: r.resourceAccount },
      contextVariables: r.context || {}
    },
    identityPolicies: r.identityPolicies || [],
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
  if (r.resourcePolicy) simulation.resourcePolicy = r.resourcePolicy
  if (r.sessionPolicy) simulation.sessionPolicy = r.sessionPolicy
  if (r.permissionBoundaries) simulation.permissionBoundaryPolicies = r.permissionBoundaries
  const declared = new Set((r.unlistedKeys || []).map((k) => k.toLowerCase()))
  let res
  try {
    res = await runSimulation(simulation, opts)
  } catch (e) {
    // The simulator's data misses some keys for their service prefix (e.g.
    // ec2:osuser, listed under ec2-instance-connect) and throws. A declared
    // one: validate the request without it, then evaluate with it.
    const m = /Condition key (\S+) not found/.exec(String(e && e.message))
    if (!m || !declared.has(m[1].toLowerCase())) throw e
    const ctx = Object.fromEntries(
      Object.entries(simulation.request.contextVariables).filter(([k]) => !declared.has(k.toLowerCase()))
    )
    const stripped = await runSimulation({ ...simulation, request: { ...simulation.request, contextVariables: ctx } }, opts)
    if (stripped.resultType === 'error') {
      return { name: r.name, decision: 'Error', engine: 'validated', error: JSON.stringify(stripped.errors) }
    }
    return unvalidated(r, simulation, Object.keys(simulation.request.contextVariables).filter((k) => declared.has(k.toLowerCase())))
  }
  if (res.resultType === 'error') {
    return { name: r.name, decision: 'Error', engine: 'validated', error: JSON.stringify(res.errors) }
  }
  const results = res.resultType === 'single' ? [res.result] : res.results
  const ignored = [...new Set(results.flatMap((x) => x.ignoredContextKeys || []))]
  if (ignored.length === 0) {
    return { name: r.name, decision: res.overallResult, engine: 'validated' }
  }
  const undeclared = ignored.filter((k) => !declared.has(k.toLowerCase()))
  if (undeclared.length > 0) {
    return {
      name: r.name,
      decision: 'Error',
      engine: 'validated',
      ignoredContextKeys: ignored,
      error: `simulator ignored context keys not valid for ${r.action}: ${undeclared.join(', ')}`
    }
  }
  return unvalidated(r, simulation, ignored)
}

// unvalidated evaluates with the full context on the unvalidated engine, once
// the validated one accepted the policies.
function unvalidated(r, simulation, ignored) {
  if (r.sessionPolicy) {
    // It would silently drop the session policy.
    return { name: r.name, decision: 'Error', engine: 'unvalidated', error: 'the unvalidated engine ignores session policies' }
  }
  // It loads the resource policy without a name and crashes on it; hand it
  // a pre-validated policy that carries one.
  const unsafe = { ...simulation }
  if (r.resourcePolicy) {
    unsafe.resourcePolicy = createValidatedPolicy(r.resourcePolicy, validateResourcePolicy, {
      name: 'ResourcePolicy'
    })
  }
  const decision = runUnsafeSimulation(unsafe, opts)
  return { name: r.name, decision, engine: 'unvalidated', ignoredContextKeys: ignored }
}

const requests = JSON.parse(await readStdin())
if (!Array.isArray(requests)) throw new Error('stdin must be a JSON array of requests')
const out = []
for (const r of requests) {
  try {
    out.push(await evaluate(r))
  } catch (e) {
    out.push({ name: r.name, decision: 'Error', error: String(e && e.stack ? e.stack : e) })
  }
}
process.stdout.write(JSON.stringify(out))
