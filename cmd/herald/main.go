// Command herald sends email campaigns: a subscriber CSV and a template in, one message
// per recipient out, through an SMTP relay, Amazon SES, SendGrid, Mandrill or a local
// outbox folder, with a durable journal that makes every run resumable.
package main

import "os"

func main() { os.Exit(Main(os.Args[1:], newSystemIO())) }
