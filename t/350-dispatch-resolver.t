# A hub reached by a host name, as in production: libcurl resolves it in a
# thread and hands the socket it waits on (one end of a socketpair) to the
# module's socket callback.  That socket is not one the module opened; it
# must be watched like the others, and refusing it would kill the worker's
# whole libcurl multi handle (every push after it failing).
#
# The name is this machine's host name (resolved through /etc/hosts; the
# IP literals and "localhost" of the other tests never start the resolver
# thread).  The sink, a stock nginx with TLS, listens on its address.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Socket qw(getaddrinfo getnameinfo AF_INET SOCK_STREAM NI_NUMERICHOST NIx_NOSERV);
use Sys::Hostname;
use AcsTest::Util;
use AcsTest::Server;
use AcsTest::Sink;

my $name = hostname();
my ($err, @ai) = getaddrinfo($name, undef, { family => AF_INET, socktype => SOCK_STREAM });
plan skip_all => "the host name \"$name\" does not resolve to an IPv4 address here"
    if $err || !@ai;
my (undef, $ip) = getnameinfo($ai[0]{addr}, NI_NUMERICHOST, NIx_NOSERV);

my $port = $ip eq '127.0.0.1' ? undef : AcsTest::Server::free_port();
my ($sink, $tls) = AcsTest::Sink::start('350-sink',
    extra => $port ? "listen $ip:$port ssl;" : '');
$port //= $sink->port;

my $srv = AcsTest::Server->new('350-dispatch-resolver');
my $root = $srv->root;

$srv->write_conf(workers => 1, http => <<"HTTP", server => <<"SERVER");
    acs_notify_registry $root/registry;
    acs_notify_hub main "connection_string=$AcsTest::Sink::CONNECTION_STRING" hub=acs-push
                   connect_to=$name:$port ca_file=$tls->{ca};
HTTP
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_dispatch_timeout 3s;
        }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        }
SERVER
$srv->start;

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
is($srv->register($BOB, 'phone', platform => 'fcmv1', handle => 'resolver-token'), 201,
   'a device registered');

my $chat = fixture('eg-chat-message-received.json');
for my $i (1 .. 3) {
    (my $body = $chat) =~ s/"id":\s*"[^"]+"/"id": "resolver-event-$i"/ or die 'no id';
    my ($st) = $srv->request(POST => '/eg', $body,
        { 'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json' });
    is($st, 200, "delivery $i through the hub at $name:$port ($ip): 200");
}

$sink->stop;
my @lines = AcsTest::Sink::pushes($sink);
is(scalar @lines, 3, 'the sink received the three pushes');

$srv->stop;
my @bad = $srv->bad_lines(qw(alert crit emerg error));
is(join("\n", @bad), '', 'no error, alert, crit or emerg');

done_testing();
