// Reads [{name, kind: identity|trust|resource, policy}] on stdin and prints
// [{name, errors: [...]}] from @cloud-copilot/iam-policy's validators.
// moto's PutBucketPolicy stores any text, so bucket policies are checked here.
import { validateIdentityPolicy, validateTrustPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy'

const validators = { identity: validateIdentityPolicy, trust: validateTrustPolicy, resource: validateResourcePolicy }
const chunks = []
for await (const c of process.stdin) chunks.push(c)
const docs = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const out = docs.map((d) => {
  const v = validators[d.kind]
  if (!v) return { name: d.name, errors: [`unknown kind ${d.kind}`] }
  return { name: d.name, errors: v(d.policy).map((e) => `${e.path}: ${e.message}`) }
})
process.stdout.write(JSON.stringify(out))
