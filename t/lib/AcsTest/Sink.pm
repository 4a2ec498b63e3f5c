package AcsTest::Sink;

# A stand-in for the front end of Notification Hubs where only the
# transport matters: a stock nginx with TLS (a certificate for
# *.servicebus.windows.net from a test CA) that reads the whole push, as NH
# does, before it answers 201 (mirror_request_body; the 404 of a missing
# file becomes the 201), and logs each push to logs/pushes.log as
# "protocol method path device-handle".  It checks nothing else:
# AcsTest::FakeNH does that.
#
#   my ($sink, $tls) = AcsTest::Sink::start('330-sink', listen => 'ssl http2');
#   acs_notify_hub main "connection_string=$AcsTest::Sink::CONNECTION_STRING"
#       hub=acs-push connect_to=127.0.0.1:${\ $sink->port} ca_file=$tls->{ca};
#   my @lines = AcsTest::Sink::pushes($sink);    # after $sink->stop

use strict;
use warnings;

use AcsTest::Server;
use AcsTest::FakeNH;

# a connection string for hubs pointed at a sink (which checks no token)
our $CONNECTION_STRING = 'Endpoint=sb://acs-test-ns.servicebus.windows.net/;'
    . 'SharedAccessKeyName=send;SharedAccessKey=c2FtcGxlLWtleQ==';

# NAME; listen => the options of its listen directive ('ssl' by default),
# extra => more directives for its server block
sub start {
    my ($name, %o) = @_;
    my $sink = AcsTest::Server->new($name);
    my $root = $sink->root;
    my $tls = AcsTest::FakeNH::setup_ca("$root/ca");
    mkdir "$root/empty";

    $sink->write_conf(listen => $o{listen} // 'ssl', http => <<'HTTP', server => <<"SERVER");
    log_format push '$server_protocol $request_method $uri $http_servicebusnotification_devicehandle';
HTTP
        ${\ ($o{extra} // '')}
        ssl_certificate $tls->{cert};
        ssl_certificate_key $tls->{key};
        keepalive_requests 100000;
        access_log $root/logs/pushes.log push;
        root $root/empty;
        log_not_found off;
        location / {
            mirror /_body;
            mirror_request_body on;
            error_page 404 =201 \@created;
        }
        location \@created { return 201; }
        location = /_body { internal; return 204; }
SERVER
    $sink->start;
    return ($sink, $tls);
}

# the lines of the pushes it answered
sub pushes {
    my ($sink) = @_;
    open my $fh, '<', $sink->root . '/logs/pushes.log' or return ();
    return <$fh>;
}

1;
